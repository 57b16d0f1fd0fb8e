/*
 * Opens wss:// sessions: the server's certificate is verified against the system's roots plus a
 * CA the application trusts; an untrusted certificate or the wrong name fails with its own error
 * code; a validation callback may still accept what the library would refuse.
 *
 * Usage: connect_tls wss://127.0.0.1:port/diffusion CA.pem
 */
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

/* Opens and closes a session from `factory`; returns DIFF_ERR_SUCCESS or the error's code. */
static ERROR_CODE_T try_session(DIFFUSION_SESSION_FACTORY_T *factory, const char *url, const char *what)
{
        SESSION_T *session = session_create_with_session_factory(factory, url);
        if (session == NULL) {
                DIFFUSION_ERROR_T error = { 0 };
                session_last_error(&error);
                printf("%s: failed (%d): %s\n", what, error.code, error.message);
                free(error.message);
                return error.code;
        }
        printf("%s: connected, state %s\n", what, session_state_as_string(session_state_get(session)));
        session_close(session, NULL);
        session_free(session);
        return DIFF_ERR_SUCCESS;
}

static int callback_calls = 0;

static int accept_anyway(const char *host, const DIFFUSION_CERTIFICATE_T *chain, size_t chain_length,
                         ERROR_CODE_T verdict, const char *reason, void *context)
{
        (void)context;
        callback_calls++;
        printf("validating %s: %zu certificate(s), first %zu bytes of DER; library verdict %d (%s)\n",
               host, chain_length, chain[0].length, verdict, reason);
        return DIFFUSION_CERTIFICATE_ACCEPT;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s wss://host:port/diffusion CA.pem\n", argv[0]);
                return 2;
        }
        const char *url = argv[1];
        const char *ca = argv[2];
        int ok = 1;

        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        ok &= try_session(factory, url, "system roots only") == DIFF_ERR_TLS_CERTIFICATE_UNTRUSTED;

        diffusion_session_factory_certificate_authority(factory, ca);
        ok &= try_session(factory, url, "with the test CA") == DIFF_ERR_SUCCESS;

        diffusion_session_factory_tls_server_name(factory, "other.example");
        ok &= try_session(factory, url, "verified as other.example") == DIFF_ERR_TLS_CERTIFICATE_NAME_MISMATCH;
        diffusion_session_factory_free(factory);

        DIFFUSION_SESSION_FACTORY_T *lenient = diffusion_session_factory_init();
        DIFFUSION_CERTIFICATE_VALIDATION_T validation = { .validate = accept_anyway };
        diffusion_session_factory_certificate_validation(lenient, &validation);
        ok &= try_session(lenient, url, "untrusted, accepted by the callback") == DIFF_ERR_SUCCESS;
        ok &= callback_calls == 1;
        diffusion_session_factory_free(lenient);

        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
