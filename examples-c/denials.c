/*
 * What the application hears when the server's permissions refuse it. User "bob" may subscribe
 * to and publish on "allowed/" only (restricted.sh's configuration file):
 * - a subscription to "denied/x" is refused: its handler's on_error runs once with
 *   DIFF_ERR_ACCESS_DENIED, then its free_context;
 * - a publication on "denied/y" is refused: the session's error handler
 *   (session_set_error_handler) runs with DIFF_ERR_ACCESS_DENIED;
 * - the session stays CONNECTED_ACTIVE and "allowed/" works.
 *
 * Usage: denials ws://host:port/diffusion
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.h"

#define WAIT_SECONDS 10

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

// What the callbacks saw, under `mutex`.
static int subscription_errors;         // on_error of the "denied/x" handler
static int subscription_error_code;
static int subscription_error_named_path;
static int error_before_free;           // on_error had run when free_context ran
static int denied_frees;                // free_context of the "denied/x" handler
static int publication_errors;          // the session's error handler
static int publication_error_code;
static int publication_error_path_ok;
static int allowed_messages;            // "allowed/z" on the "allowed/" handler

static int failures = 0;

static void check(int condition, const char *what)
{
        printf("%s: %s\n", condition ? "ok" : "FAILED", what);
        if (!condition) {
                failures++;
        }
}

static void signal_change(void)
{
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&mutex);
}

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)session;
        (void)data;
        (void)len;
        (void)context;
        pthread_mutex_lock(&mutex);
        if (strcmp(path, "allowed/z") == 0) {
                allowed_messages++;
        }
        signal_change();
        return HANDLER_SUCCESS;
}

static void on_subscription_error(SESSION_T *session, const char *path, const DIFFUSION_ERROR_T *error, void *context)
{
        (void)session;
        (void)context;
        printf("on_error: %s (%d): %s\n", path, error->code, error->message);
        pthread_mutex_lock(&mutex);
        subscription_errors++;
        subscription_error_code = error->code;
        subscription_error_named_path = strcmp(path, "denied/x") == 0 && strstr(error->message, "denied/x") != NULL;
        signal_change();
}

static void denied_free(void *context)
{
        (void)context;
        pthread_mutex_lock(&mutex);
        error_before_free = subscription_errors == 1;
        denied_frees++;
        signal_change();
}

static void on_publication_error(SESSION_T *session, const char *path, const DIFFUSION_ERROR_T *error, void *context)
{
        (void)session;
        (void)context;
        printf("session error handler: %s (%d): %s\n", path, error->code, error->message);
        pthread_mutex_lock(&mutex);
        publication_errors++;
        publication_error_code = error->code;
        publication_error_path_ok = strcmp(path, "denied/y") == 0 && strstr(error->message, "denied/y") != NULL;
        signal_change();
}

// Waits until *counter reaches at least `n`, or WAIT_SECONDS.
static int wait_for(const int *counter, int n)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += WAIT_SECONDS;
        pthread_mutex_lock(&mutex);
        int reached = *counter >= n;
        while (!reached) {
                if (pthread_cond_timedwait(&cond, &mutex, &deadline) != 0) {
                        reached = *counter >= n;
                        break;
                }
                reached = *counter >= n;
        }
        pthread_mutex_unlock(&mutex);
        return reached;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion\n", argv[0]);
                return 2;
        }
        CREDENTIALS_T *credentials = credentials_create_password("bob-pw");
        DIFFUSION_ERROR_T error = { 0 };
        SESSION_T *session = session_create(argv[1], "bob", credentials, NULL, NULL, &error);
        if (session == NULL) {
                fprintf(stderr, "session_create failed (%d): %s\n", error.code, error.message);
                free(error.message);
                credentials_free(credentials);
                return 1;
        }
        check(session_set_error_handler(session, on_publication_error, NULL) == 1, "error handler set");
        check(session_set_error_handler(NULL, on_publication_error, NULL) == 0, "NULL session refused");

        SESSION_MESSAGE_HANDLER_T denied = { 0 };
        denied.on_message = on_message;
        denied.free_context = denied_free;
        denied.on_error = on_subscription_error;
        check(session_subscribe(session, "denied/x", &denied, &error) == 1, "subscribe to denied/x sent");
        check(wait_for(&denied_frees, 1), "free_context of the refused subscription ran");
        pthread_mutex_lock(&mutex);
        check(subscription_errors == 1, "on_error ran once");
        check(subscription_error_code == DIFF_ERR_ACCESS_DENIED, "with DIFF_ERR_ACCESS_DENIED");
        check(subscription_error_named_path, "for denied/x, named in the message");
        check(error_before_free, "before free_context");
        pthread_mutex_unlock(&mutex);
        check(session_unsubscribe(session, "denied/x", &error) == 0 && error.code == DIFF_ERR_ILLEGAL_ARGUMENT,
              "the refused subscription is gone");
        free(error.message);
        error.message = NULL;

        check(session_publish(session, "denied/y", "no", 2, &error) == 1, "publish on denied/y sent");
        check(wait_for(&publication_errors, 1), "the session error handler heard of the refusal");
        pthread_mutex_lock(&mutex);
        check(publication_error_code == DIFF_ERR_ACCESS_DENIED, "with DIFF_ERR_ACCESS_DENIED");
        check(publication_error_path_ok, "for denied/y, named in the message");
        pthread_mutex_unlock(&mutex);

        SESSION_MESSAGE_HANDLER_T allowed = { .on_message = on_message };
        check(session_subscribe(session, "allowed/", &allowed, &error) == 1, "subscribe to allowed/");
        check(session_publish(session, "allowed/z", "yes", 3, &error) == 1, "publish on allowed/z");
        check(wait_for(&allowed_messages, 1), "allowed/z delivered");
        check(session_state_get(session) == CONNECTED_ACTIVE, "the session is still CONNECTED_ACTIVE");

        check(session_close(session, &error) == 1, "session closed");
        session_free(session);
        credentials_free(credentials);
        pthread_mutex_lock(&mutex);
        check(denied_frees == 1 && subscription_errors == 1, "each callback ran once");
        pthread_mutex_unlock(&mutex);
        printf("%s\n", failures == 0 ? "denials: all checks passed" : "denials: FAILED");
        return failures == 0 ? 0 : 1;
}
