/*
 * Opens a session through an HTTP proxy that requires Basic authentication: one extra factory
 * call. Then shows what a wrong proxy password gives: DIFF_ERR_PROXY_AUTHENTICATION_FAILED, with
 * a message naming the proxy and its answer (never the password).
 *
 * Usage: connect_via_proxy ws://host:port/diffusion PROXY_PORT
 *        (the proxy on 127.0.0.1:PROXY_PORT accepts user "demo", password "demo-proxy-pw")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

static SESSION_T *open_via_proxy(const char *url, int proxy_port, const char *proxy_password)
{
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(factory, "alice");
        diffusion_session_factory_password(factory, "secret");

        // The one extra call: the proxy and how to authenticate to it.
        DIFFUSION_PROXY_AUTHENTICATION_T *auth = diffusion_proxy_authentication_basic("demo", proxy_password);
        diffusion_session_factory_http_proxy(factory, "127.0.0.1", proxy_port, auth);
        diffusion_proxy_authentication_free(auth);

        SESSION_T *session = session_create_with_session_factory(factory, url);
        diffusion_session_factory_free(factory);
        return session;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion PROXY_PORT\n", argv[0]);
                return 2;
        }
        const char *url = argv[1];
        int proxy_port = atoi(argv[2]);
        int ok = 1;

        SESSION_T *session = open_via_proxy(url, proxy_port, "demo-proxy-pw");
        if (session == NULL) {
                DIFFUSION_ERROR_T error = { 0 };
                session_last_error(&error);
                fprintf(stderr, "cannot connect through the proxy (%d): %s\n", error.code, error.message);
                free(error.message);
                ok = 0;
        } else {
                char *id = session_id_to_string(session_get_id(session));
                printf("Connected through the proxy on port %d, session %s\n", proxy_port, id);
                free(id);
                session_close(session, NULL);
                session_free(session);
        }

        SESSION_T *refused = open_via_proxy(url, proxy_port, "not-the-password");
        DIFFUSION_ERROR_T error = { 0 };
        if (refused != NULL || !session_last_error(&error)
            || error.code != DIFF_ERR_PROXY_AUTHENTICATION_FAILED
            || strstr(error.message, "not-the-password") != NULL) {
                fprintf(stderr, "a wrong proxy password did not fail with DIFF_ERR_PROXY_AUTHENTICATION_FAILED\n");
                ok = 0;
        } else {
                printf("Wrong proxy password (%d): %s\n", error.code, error.message);
        }
        free(error.message);
        session_free(refused);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
