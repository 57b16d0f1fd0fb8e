/*
 * Transport cascading: behind a proxy that refuses CONNECT, a WebSocket cannot get through, so a
 * factory listing [WEBSOCKET, HTTP_POLLING] ends on HTTP long polling, and the session publishes
 * and receives as usual. WEBSOCKET alone fails with the tunnel-refused error.
 *
 * Usage: connect_cascade ws://host:port/diffusion PROXY_PORT
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.h"

static volatile int received = 0;

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)session;
        (void)context;
        printf("received on %s: %.*s\n", path, (int)len, (const char *)data);
        received++;
        return HANDLER_SUCCESS;
}

static DIFFUSION_SESSION_FACTORY_T *factory_behind_proxy(int proxy_port)
{
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(factory, "alice");
        diffusion_session_factory_password(factory, "secret");
        diffusion_session_factory_http_proxy(factory, "127.0.0.1", proxy_port, NULL);
        return factory;
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

        // WebSocket only: the proxy refuses the tunnel.
        DIFFUSION_SESSION_FACTORY_T *ws_only = factory_behind_proxy(proxy_port);
        SESSION_T *refused = session_create_with_session_factory(ws_only, url);
        DIFFUSION_ERROR_T error = { 0 };
        if (refused != NULL || !session_last_error(&error) || error.code != DIFF_ERR_PROXY_TUNNEL_REFUSED) {
                fprintf(stderr, "WEBSOCKET alone did not fail with DIFF_ERR_PROXY_TUNNEL_REFUSED\n");
                ok = 0;
        } else {
                printf("WEBSOCKET alone: %s\n", error.message);
        }
        free(error.message);
        session_free(refused);
        diffusion_session_factory_free(ws_only);

        // The cascade reaches HTTP polling.
        DIFFUSION_SESSION_FACTORY_T *factory = factory_behind_proxy(proxy_port);
        const TRANSPORT_TYPE_T transports[] = { WEBSOCKET, HTTP_POLLING };
        if (!diffusion_session_factory_transports(factory, transports, 2)) {
                fprintf(stderr, "the transport list was refused\n");
                ok = 0;
        }
        SESSION_T *session = session_create_with_session_factory(factory, url);
        diffusion_session_factory_free(factory);
        if (session == NULL) {
                DIFFUSION_ERROR_T failed = { 0 };
                session_last_error(&failed);
                fprintf(stderr, "the cascade failed (%d): %s\n", failed.code, failed.message);
                free(failed.message);
                return EXIT_FAILURE;
        }
        printf("connected over %s\n", session_get_transport(session) == HTTP_POLLING ? "HTTP_POLLING" : "WEBSOCKET");
        ok &= session_get_transport(session) == HTTP_POLLING;

        SESSION_MESSAGE_HANDLER_T handler = { .on_message = on_message };
        ok &= session_subscribe(session, "cascade", &handler, NULL);
        ok &= session_publish(session, "cascade", "polled", 6, NULL);
        struct timespec pause = { 0, 10 * 1000 * 1000 };
        for (int i = 0; i < 1000 && received == 0; i++) {
                nanosleep(&pause, NULL);
        }
        ok &= received == 1;
        session_close(session, NULL);
        session_free(session);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
