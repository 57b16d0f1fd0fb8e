/*
 * Opens a session synchronously with a principal and password, prints its id and closes it.
 * Then shows the failure path: a wrong password makes session_create return NULL with
 * DIFF_ERR_AUTHENTICATION_FAILED.
 *
 * Usage: connect_sync ws://host:port/diffusion
 */
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

static int connect_with_password(const char *url)
{
        const char *principal = "alice";
        CREDENTIALS_T *credentials = credentials_create_password("secret");
        DIFFUSION_ERROR_T error = { 0 };

        SESSION_T *session = session_create(
                url,
                principal,
                credentials,
                NULL,           // session listener
                NULL,           // reconnection strategy
                &error
        );
        if (session == NULL) {
                fprintf(stderr, "session_create failed (%d): %s\n", error.code, error.message);
                free(error.message);
                credentials_free(credentials);
                return 0;
        }

        int ok = 1;
        char *id = session_id_to_string(session_get_id(session));
        if (id == NULL) {
                fprintf(stderr, "connected session has no id\n");
                ok = 0;
        } else {
                printf("Connected as %s, session id %s, state %s\n",
                       principal, id, session_state_as_string(session_state_get(session)));
                free(id);
        }

        if (!session_close(session, &error)) {
                fprintf(stderr, "session_close failed (%d): %s\n", error.code, error.message);
                free(error.message);
                ok = 0;
        }
        session_free(session);
        // Freed last: the vendor's API requires credentials to outlive the session.
        credentials_free(credentials);
        return ok;
}

static int reject_wrong_password(const char *url)
{
        CREDENTIALS_T *credentials = credentials_create_password("not-the-password");
        DIFFUSION_ERROR_T error = { 0 };

        SESSION_T *session = session_create(url, "alice", credentials, NULL, NULL, &error);
        credentials_free(credentials);
        if (session != NULL) {
                fprintf(stderr, "session_create with a wrong password succeeded\n");
                session_close(session, NULL);
                session_free(session);
                return 0;
        }

        printf("Wrong password rejected (%d): %s\n", error.code,
               error.message != NULL ? error.message : "(no message)");
        int ok = error.code == DIFF_ERR_AUTHENTICATION_FAILED && error.message != NULL;
        if (!ok) {
                fprintf(stderr, "expected DIFF_ERR_AUTHENTICATION_FAILED (%d) with a message\n",
                        DIFF_ERR_AUTHENTICATION_FAILED);
        }
        free(error.message);
        return ok;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion\n", argv[0]);
                return 2;
        }
        // Line-buffered so that, when captured, stdout stays in order with stderr.
        setvbuf(stdout, NULL, _IOLBF, 0);
        const char *url = argv[1];

        int ok = connect_with_password(url);
        ok = reject_wrong_password(url) && ok;
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
