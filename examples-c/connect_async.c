/*
 * Opens a session asynchronously: session_create_async returns at once and exactly one of the
 * callbacks runs later, on a libsession thread. The main thread waits for it, then closes.
 *
 * Usage: connect_async ws://host:port/diffusion
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "session.h"

// How long the main thread waits for a callback before giving up.
#define CONNECT_WAIT_SECONDS 10

// What the callbacks report to the main thread.
static pthread_mutex_t result_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t result_cond = PTHREAD_COND_INITIALIZER;
static int connected_calls = 0;
static int error_calls = 0;

static void record_callback(int *counter)
{
        pthread_mutex_lock(&result_mutex);
        (*counter)++;
        pthread_cond_broadcast(&result_cond);
        pthread_mutex_unlock(&result_mutex);
}

static int on_session_connected(SESSION_T *session)
{
        // Invoked if the client can successfully connect to Diffusion,
        // and a session instance is ready for use.
        char *id = session_id_to_string(session_get_id(session));
        printf("on_connected: session %s is %s\n",
               id != NULL ? id : "(no id)", session_state_as_string(session_state_get(session)));
        free(id);
        record_callback(&connected_calls);
        return HANDLER_SUCCESS;
}

static int on_session_error(SESSION_T *session, DIFFUSION_ERROR_T *error)
{
        // Invoked if there is an error connection to the Diffusion server.
        (void)session;
        // The error belongs to the library: read it here, do not free it.
        printf("on_error (%d): %s\n", error->code, error->message);
        record_callback(&error_calls);
        return HANDLER_SUCCESS;
}

// Waits until a callback has run or the deadline passes; returns 1 if one ran.
static int wait_for_callback(void)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += CONNECT_WAIT_SECONDS;

        int rc = 0;
        pthread_mutex_lock(&result_mutex);
        while (connected_calls + error_calls == 0 && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&result_cond, &result_mutex, &deadline);
        }
        int called = connected_calls + error_calls > 0;
        pthread_mutex_unlock(&result_mutex);
        return called;
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
        const char *principal = "alice";
        CREDENTIALS_T *credentials = credentials_create_password("secret");
        DIFFUSION_ERROR_T error = { 0 };

        SESSION_CREATE_CALLBACK_T callbacks = {
                .on_connected = on_session_connected,
                .on_error = on_session_error
        };

        SESSION_T *session = session_create_async(
                url,
                principal,
                credentials,
                NULL,           // session listener
                NULL,           // reconnection strategy
                &callbacks,
                &error);
        if (session == NULL) {
                fprintf(stderr, "session_create_async failed (%d): %s\n", error.code, error.message);
                free(error.message);
                credentials_free(credentials);
                return EXIT_FAILURE;
        }
        printf("session_create_async returned; waiting for a callback\n");

        int ok = wait_for_callback();
        if (!ok) {
                fprintf(stderr, "no callback within %d s\n", CONNECT_WAIT_SECONDS);
        }

        // No callback starts after session_close returns, so the counts below are final.
        if (!session_close(session, &error)) {
                fprintf(stderr, "session_close failed (%d): %s\n", error.code, error.message);
                free(error.message);
                ok = 0;
        }

        pthread_mutex_lock(&result_mutex);
        printf("on_connected ran %d time(s), on_error ran %d time(s)\n", connected_calls, error_calls);
        if (connected_calls != 1 || error_calls != 0) {
                fprintf(stderr, "expected on_connected exactly once and no on_error\n");
                ok = 0;
        }
        pthread_mutex_unlock(&result_mutex);

        session_free(session);
        credentials_free(credentials);
        return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
