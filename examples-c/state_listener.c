/*
 * Follows a session's state changes with a session listener: a synchronous connect followed by
 * a close shows CONNECTING -> CONNECTED_ACTIVE, then CONNECTED_ACTIVE -> CLOSED_BY_CLIENT. The
 * session is CONNECTING from the create call on, so no change leads to CONNECTING.
 *
 * Usage: state_listener ws://host:port/diffusion
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "session.h"

#define MAX_CHANGES 16

// State changes seen by the listener. It runs on a libsession thread, except for
// CLOSED_BY_CLIENT, which runs inside session_close on the main thread.
static pthread_mutex_t changes_mutex = PTHREAD_MUTEX_INITIALIZER;
static SESSION_STATE_T old_states[MAX_CHANGES];
static SESSION_STATE_T new_states[MAX_CHANGES];
static int change_count = 0;

static void on_session_state_changed(
        SESSION_T *session,
        const SESSION_STATE_T old_state,
        const SESSION_STATE_T new_state)
{
        (void)session;
        printf("Session state changed from %s (%d) to %s (%d)\n",
               session_state_as_string(old_state), old_state,
               session_state_as_string(new_state), new_state);

        pthread_mutex_lock(&changes_mutex);
        if (change_count < MAX_CHANGES) {
                old_states[change_count] = old_state;
                new_states[change_count] = new_state;
        }
        change_count++;
        pthread_mutex_unlock(&changes_mutex);
}

// Checks the recorded changes: each one starts where the previous one ended.
static int check_changes(void)
{
        static const SESSION_STATE_T expected[] = { CONNECTED_ACTIVE, CLOSED_BY_CLIENT };
        const int expected_count = (int)(sizeof expected / sizeof expected[0]);
        int ok = 1;

        pthread_mutex_lock(&changes_mutex);
        if (change_count != expected_count) {
                fprintf(stderr, "expected %d state changes, saw %d\n", expected_count, change_count);
                ok = 0;
        }
        for (int i = 0; i < expected_count && i < change_count && i < MAX_CHANGES; i++) {
                SESSION_STATE_T from = i == 0 ? CONNECTING : expected[i - 1];
                if (new_states[i] != expected[i] || old_states[i] != from) {
                        fprintf(stderr, "change %d: expected %s -> %s, saw %s -> %s\n", i + 1,
                                session_state_as_string(from), session_state_as_string(expected[i]),
                                session_state_as_string(old_states[i]),
                                session_state_as_string(new_states[i]));
                        ok = 0;
                }
        }
        pthread_mutex_unlock(&changes_mutex);
        return ok;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion\n", argv[0]);
                return 2;
        }
        const char *url = argv[1];
        const char *principal = "alice";
        CREDENTIALS_T *credentials = credentials_create_password("secret");
        DIFFUSION_ERROR_T error = { 0 };

        // Line-buffered so that, when captured, stdout stays in order with stderr.
        setvbuf(stdout, NULL, _IOLBF, 0);

        SESSION_LISTENER_T listener = {
                .on_state_changed = on_session_state_changed
        };

        SESSION_T *session = session_create(
                url,
                principal,
                credentials,
                &listener,
                NULL,           // reconnection strategy
                &error
        );
        if (session == NULL) {
                fprintf(stderr, "session_create failed (%d): %s\n", error.code, error.message);
                free(error.message);
                credentials_free(credentials);
                return EXIT_FAILURE;
        }
        printf("session_create returned; state %s\n",
               session_state_as_string(session_state_get(session)));

        int ok = 1;
        if (!session_close(session, &error)) {
                fprintf(stderr, "session_close failed (%d): %s\n", error.code, error.message);
                free(error.message);
                ok = 0;
        }
        printf("session_close returned; state %s\n",
               session_state_as_string(session_state_get(session)));

        // CLOSED_BY_CLIENT is delivered before session_close returns and nothing follows it.
        ok = check_changes() && ok;

        session_free(session);
        credentials_free(credentials);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
