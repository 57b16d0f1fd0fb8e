/*
 * The error model seen from C: failures return NULL (or 0) and fill a DIFFUSION_ERROR_T whose
 * code says what went wrong and whose malloc'd message says why; NULL arguments never crash.
 * Needs no server: every connection attempt here fails before or at the TCP connect.
 *
 * Usage: errors [ws://host:port/diffusion]   (the URL is accepted and ignored)
 */
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

static int failures = 0;

static void check(int condition, const char *what)
{
        if (!condition) {
                fprintf(stderr, "FAILED: %s\n", what);
                failures++;
        }
}

// session_create must fail with `expected` and a message; alternates the two ways to free it.
static void expect_create_error(const char *url, ERROR_CODE_T expected, const char *expected_name)
{
        static int use_free = 1;
        const char *shown = url != NULL ? url : "NULL";
        DIFFUSION_ERROR_T error = { 0 };

        SESSION_T *session = session_create(url, NULL, NULL, NULL, NULL, &error);
        printf("session_create(%s) -> %s, code %d, message: %s\n", shown,
               session != NULL ? "session" : "NULL", error.code,
               error.message != NULL ? error.message : "(none)");

        if (session != NULL) {
                fprintf(stderr, "FAILED: session_create(%s) returned a session\n", shown);
                failures++;
                session_close(session, NULL);
                session_free(session);
        }
        if (error.code != expected) {
                fprintf(stderr, "FAILED: session_create(%s): expected %s (%d), got %d\n",
                        shown, expected_name, expected, error.code);
                failures++;
        }
        check(error.message != NULL, "the error has a message");

        if (use_free) {
                free(error.message);
        } else {
                diffusion_error_free(&error);
                check(error.message == NULL, "diffusion_error_free sets message to NULL");
                // A second call finds NULL and does nothing.
                diffusion_error_free(&error);
        }
        use_free = !use_free;
}

int main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        // Line-buffered so that, when captured, stdout stays in order with stderr.
        setvbuf(stdout, NULL, _IOLBF, 0);

        expect_create_error(NULL, DIFF_ERR_ILLEGAL_ARGUMENT, "DIFF_ERR_ILLEGAL_ARGUMENT");
        expect_create_error("http://x", DIFF_ERR_UNKNOWN_TRANSPORT, "DIFF_ERR_UNKNOWN_TRANSPORT");
        expect_create_error("ws://h/bad", DIFF_ERR_PARSE_URL, "DIFF_ERR_PARSE_URL");
        expect_create_error("wss://127.0.0.1:1", DIFF_ERR_SOCKET_CONNECT_FAIL,
                            "DIFF_ERR_SOCKET_CONNECT_FAIL");
        // Port 1 on the loopback interface has no listener, so the connect is refused.
        expect_create_error("ws://127.0.0.1:1/diffusion", DIFF_ERR_SOCKET_CONNECT_FAIL,
                            "DIFF_ERR_SOCKET_CONNECT_FAIL");

        check(session_state_get(NULL) == SESSION_STATE_UNKNOWN,
              "session_state_get(NULL) is SESSION_STATE_UNKNOWN");
        check(session_is_connected(NULL) == 0, "session_is_connected(NULL) is 0");
        check(session_is_closed(NULL) == 0, "session_is_closed(NULL) is 0");
        check(session_get_id(NULL) == NULL, "session_get_id(NULL) is NULL");
        check(session_id_to_string(NULL) == NULL, "session_id_to_string(NULL) is NULL");
        check(credentials_create_password(NULL) == NULL, "credentials_create_password(NULL) is NULL");

        // Releasing nothing is allowed and does nothing.
        session_free(NULL);
        credentials_free(NULL);
        diffusion_error_free(NULL);

        DIFFUSION_ERROR_T error = { 0 };
        int closed = session_close(NULL, &error);
        printf("session_close(NULL) -> %d, code %d, message: %s\n", closed, error.code,
               error.message != NULL ? error.message : "(none)");
        check(closed == 0, "session_close(NULL) returns 0");
        check(error.code == DIFF_ERR_ILLEGAL_ARGUMENT, "session_close(NULL) reports ILLEGAL_ARGUMENT");
        check(error.message != NULL, "session_close(NULL) gives a message");
        diffusion_error_free(&error);
        // Without an error struct there is nothing to fill, but it must still fail cleanly.
        check(session_close(NULL, NULL) == 0, "session_close(NULL, NULL) returns 0");

        if (failures > 0) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return EXIT_FAILURE;
        }
        printf("all error checks passed\n");
        return EXIT_SUCCESS;
}
