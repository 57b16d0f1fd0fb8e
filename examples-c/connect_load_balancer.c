/*
 * Opens a session through a load balancer (haproxy) that routes on the request path: the factory
 * builds the URL from host, port and request path, adds a header the balancer may route on, and
 * the session id's server_instance tells which server holds the session.
 *
 * Usage: connect_load_balancer ws://host:port/diffusion BALANCER_PORT
 */
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

/* The server instance holding a session, or 0 when it could not connect. */
static uint64_t landed_on(DIFFUSION_SESSION_FACTORY_T *factory, const char *url, const char *what)
{
        SESSION_T *session = session_create_with_session_factory(factory, url);
        if (session == NULL) {
                DIFFUSION_ERROR_T error = { 0 };
                session_last_error(&error);
                fprintf(stderr, "%s: cannot connect (%d): %s\n", what, error.code, error.message);
                free(error.message);
                return 0;
        }
        const SESSION_ID_T *id = session_get_id(session);
        char *text = session_id_to_string(id);
        uint64_t instance = id->server_instance;
        printf("%s: session %s on server instance %016llx\n", what, text, (unsigned long long)instance);
        free(text);
        session_close(session, NULL);
        session_free(session);
        return instance;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion BALANCER_PORT\n", argv[0]);
                return 2;
        }
        int ok = 1;
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(factory, "alice");
        diffusion_session_factory_password(factory, "secret");

        uint64_t direct = landed_on(factory, argv[1], "direct");

        // Through the balancer: no URL, the factory builds it.
        diffusion_session_factory_server_host(factory, "127.0.0.1");
        diffusion_session_factory_server_port(factory, atoi(argv[2]));
        diffusion_session_factory_request_path(factory, "/diffusion");
        if (!diffusion_session_factory_http_header(factory, "X-Client", "connect_load_balancer")) {
                fprintf(stderr, "a valid header was refused\n");
                ok = 0;
        }
        uint64_t balanced = landed_on(factory, NULL, "through the balancer");
        ok &= direct != 0 && balanced == direct;
        diffusion_session_factory_free(factory);

        // Header injection is refused, and sessions from that factory then fail rather than go
        // out without the header.
        DIFFUSION_SESSION_FACTORY_T *bad = diffusion_session_factory_init();
        if (diffusion_session_factory_http_header(bad, "X-Evil", "a\r\nHost: elsewhere")) {
                fprintf(stderr, "header injection was accepted\n");
                ok = 0;
        }
        SESSION_T *refused = session_create_with_session_factory(bad, argv[1]);
        DIFFUSION_ERROR_T error = { 0 };
        if (refused != NULL || !session_last_error(&error) || error.code != DIFF_ERR_ILLEGAL_ARGUMENT) {
                fprintf(stderr, "a factory with a refused header still created a session\n");
                ok = 0;
        } else {
                printf("refused header: %s\n", error.message);
        }
        free(error.message);
        session_free(refused);
        diffusion_session_factory_free(bad);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
