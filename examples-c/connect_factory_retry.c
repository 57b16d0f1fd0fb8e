/*
 * Opens a session with a session factory and an initial retry strategy: the C snippet of the
 * "Initial Session Establishment Retry Strategy" page, unchanged between the markers. Then shows
 * the strategy's validation (an interval of 0 is refused with a described error) and a factory
 * building the URL from host, port and path when none is given.
 *
 * Usage: connect_factory_retry ws://host:port/diffusion
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

static int connect_as_in_the_documentation(const char *url)
{
        const char *principal = "alice";
        CREDENTIALS_T *credentials = credentials_create_password("secret");

        /* --- begin: documentation snippet --- */
        // Create a session factory and configure the principal and credentials, if required.
        DIFFUSION_SESSION_FACTORY_T *session_factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(session_factory, principal);
        diffusion_session_factory_credentials(session_factory, credentials);

        // Create an initial session establishment retry strategy.
        // It will attempt 10 times to connect to the Diffusion server, with 500 milliseconds interval between attempts
        DIFFUSION_RETRY_STRATEGY_T *retry_strategy = diffusion_retry_strategy_create(500, 10, NULL);
        diffusion_session_factory_initial_retry_strategy(session_factory, retry_strategy);

        // Create a session, synchronously.
        SESSION_T *session = session_create_with_session_factory(session_factory, url);

        // ...

        session_close(session, NULL);
        session_free(session);
        diffusion_session_factory_free(session_factory);
        /* --- end: documentation snippet --- */

        diffusion_retry_strategy_free(retry_strategy);
        credentials_free(credentials);
        if (session == NULL) {
                DIFFUSION_ERROR_T error = { 0 };
                session_last_error(&error);
                fprintf(stderr, "session_create_with_session_factory failed (%d): %s\n", error.code,
                        error.message);
                free(error.message);
                return 0;
        }
        printf("Connected and closed through a session factory with a retry strategy\n");
        return 1;
}

static int invalid_strategy_is_refused(void)
{
        DIFFUSION_API_ERROR api_error = NULL;
        DIFFUSION_RETRY_STRATEGY_T *strategy = diffusion_retry_strategy_create(0, 10, &api_error);
        int ok = strategy == NULL && api_error != NULL
                 && get_diffusion_api_error_code(api_error) == DIFF_ERR_ILLEGAL_ARGUMENT;
        if (api_error != NULL) {
                printf("Interval 0 refused: %s\n", get_diffusion_api_error_description(api_error));
        }
        diffusion_api_error_free(api_error);
        diffusion_retry_strategy_free(strategy);
        if (!ok) {
                fprintf(stderr, "an interval of 0 was not refused with DIFF_ERR_ILLEGAL_ARGUMENT\n");
        }
        return ok;
}

/* Builds the URL from the factory: host and port taken from `url` (ws://HOST:PORT/diffusion). */
static int factory_builds_the_url(const char *url)
{
        char host[64] = { 0 };
        int port = 0;
        if (sscanf(url, "ws://%63[^:]:%d", host, &port) != 2) {
                fprintf(stderr, "cannot take host and port from %s\n", url);
                return 0;
        }
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_server_host(factory, host);
        diffusion_session_factory_server_port(factory, port);
        diffusion_session_factory_request_path(factory, "/diffusion");
        diffusion_session_factory_principal(factory, "alice");
        diffusion_session_factory_password(factory, "secret");
        diffusion_session_factory_property(factory, "example", "connect_factory_retry");

        SESSION_T *session = session_create_with_session_factory(factory, NULL);
        int ok = session != NULL && session_is_connected(session);
        printf("Session from host and port: %s\n", ok ? "connected" : "failed");
        session_close(session, NULL);
        session_free(session);

        // Without a URL and without a host, creation fails with a described error.
        diffusion_session_factory_server_host(factory, NULL);
        SESSION_T *none = session_create_with_session_factory(factory, NULL);
        DIFFUSION_ERROR_T error = { 0 };
        if (none != NULL || !session_last_error(&error) || error.code != DIFF_ERR_PARSE_URL) {
                fprintf(stderr, "a factory without a host did not fail with DIFF_ERR_PARSE_URL\n");
                ok = 0;
        } else {
                printf("No host: %s\n", error.message);
        }
        diffusion_error_free(&error);
        session_free(none);
        diffusion_session_factory_free(factory);
        return ok;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion\n", argv[0]);
                return 2;
        }
        int ok = connect_as_in_the_documentation(argv[1]);
        ok = invalid_strategy_is_refused() && ok;
        ok = factory_builds_the_url(argv[1]) && ok;
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
