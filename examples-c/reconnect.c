/*
 * Reconnection: a session that loses its connection recovers it and stays the same session.
 * The session connects through haproxy, which cuts connections idle for a second; the library
 * reconnects under a user reconnection strategy. The listener sees CONNECTED_ACTIVE ->
 * RECOVERING_RECONNECT -> CONNECTED_ACTIVE, the session id does not change and the subscription
 * made before the loss still delivers. Also: an invalid repeating strategy is refused with NULL.
 *
 * Usage: reconnect ws://host:port/diffusion HAPROXY_PORT
 *        (the server's URL, for a second session that publishes; haproxy on
 *        127.0.0.1:HAPROXY_PORT forwards to that server)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "session.h"

// How long to wait for a reconnection, and for a callback after it (all within ctest's 30 s).
#define RECONNECT_WAIT_SECONDS 15
#define CALLBACK_WAIT_SECONDS 5
// How long the session may try to reconnect after each loss, in milliseconds.
#define RECONNECT_TIMEOUT_MS 10000
#define MAX_CHANGES 256

#define TEXT "published after the reconnection"

// The path is "reconnect/<pid>", so that runs sharing a server do not see each other's messages.
static char subscribed_path[64];

// Everything the callbacks report to the main thread, guarded by one mutex.
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static SESSION_STATE_T new_states[MAX_CHANGES];
static int change_count = 0;
static int closed = 0;                  // the listener saw a closed state
static int attempts = 0;                // calls of the reconnection function
static int successes = 0;
static int failures_reported = 0;       // calls of the failure callback
static int messages = 0;
static int wrong_messages = 0;

static int failures = 0;

static void check(int condition, const char *what)
{
        printf("%s: %s\n", condition ? "ok" : "FAILED", what);
        if (!condition) {
                failures++;
        }
}

static void on_state_changed(SESSION_T *session, SESSION_STATE_T old_state, SESSION_STATE_T new_state)
{
        (void)session;
        printf("state: %s -> %s\n", session_state_as_string(old_state), session_state_as_string(new_state));
        pthread_mutex_lock(&mutex);
        if (change_count < MAX_CHANGES) {
                new_states[change_count] = new_state;
        }
        change_count++;
        closed = closed || new_state >= CLOSED_BY_CLIENT;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&mutex);
}

// Runs before each attempt, on a thread where it may block; always asks for the attempt.
static RECONNECTION_ATTEMPT_ACTION_T on_reconnect(SESSION_T *session, void *args)
{
        (void)session;
        (void)args;
        pthread_mutex_lock(&mutex);
        int attempt = ++attempts;
        pthread_mutex_unlock(&mutex);
        printf("reconnection attempt %d: START\n", attempt);
        return RECONNECTION_ATTEMPT_ACTION_START;
}

static void on_reconnected(SESSION_T *session, void *args)
{
        (void)session;
        (void)args;
        pthread_mutex_lock(&mutex);
        successes++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&mutex);
        printf("reconnected\n");
}

static void on_reconnection_failed(SESSION_T *session, void *args)
{
        (void)session;
        (void)args;
        pthread_mutex_lock(&mutex);
        failures_reported++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&mutex);
        printf("reconnection given up\n");
}

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)session;
        (void)context;
        int expected = strcmp(path, subscribed_path) == 0 && len == strlen(TEXT) && memcmp(data, TEXT, len) == 0;
        printf("message on %s (%zu bytes)%s\n", path, len, expected ? "" : ": not the one published");
        pthread_mutex_lock(&mutex);
        if (expected) {
                messages++;
        } else {
                wrong_messages++;
        }
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&mutex);
        return HANDLER_SUCCESS;
}

// True once the listener has seen RECOVERING_RECONNECT followed, later, by CONNECTED_ACTIVE.
// Called with the mutex held.
static int recovered(void)
{
        int recovering = 0;
        for (int i = 0; i < change_count && i < MAX_CHANGES; i++) {
                if (new_states[i] == RECOVERING_RECONNECT) {
                        recovering = 1;
                } else if (recovering && new_states[i] == CONNECTED_ACTIVE) {
                        return 1;
                }
        }
        return 0;
}

// More conditions for wait_until, also called with the mutex held.
static int message_arrived(void)
{
        return messages + wrong_messages > 0;
}

static int reconnected(void)
{
        return successes > 0;
}

// Waits until `condition` holds (or the session closed) or `seconds` pass; returns `condition`.
static int wait_until(int (*condition)(void), int seconds)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += seconds;
        int rc = 0;
        pthread_mutex_lock(&mutex);
        while (!condition() && !closed && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&cond, &mutex, &deadline);
        }
        int holds = condition();
        pthread_mutex_unlock(&mutex);
        return holds;
}

static SESSION_T *open_session(const char *url, SESSION_LISTENER_T *listener,
                               RECONNECTION_STRATEGY_T *strategy)
{
        CREDENTIALS_T *credentials = credentials_create_password("secret");
        DIFFUSION_ERROR_T error = { 0 };
        SESSION_T *session = session_create(url, "alice", credentials, listener, strategy, &error);
        credentials_free(credentials);
        if (session == NULL) {
                fprintf(stderr, "session_create(%s) failed (%d): %s\n", url, error.code, error.message);
                free(error.message);
        }
        return session;
}

// Publishes the message from a second session connected to the server directly.
static int publish_directly(const char *url)
{
        SESSION_T *publisher = open_session(url, NULL, NULL);
        if (publisher == NULL) {
                return 0;
        }
        DIFFUSION_ERROR_T error = { 0 };
        int ok = session_publish(publisher, subscribed_path, TEXT, strlen(TEXT), &error);
        if (!ok) {
                fprintf(stderr, "session_publish failed (%d): %s\n", error.code, error.message);
                free(error.message);
        } else {
                // session_close does not promise to send what is still queued: wait for the
                // message to arrive first.
                wait_until(message_arrived, CALLBACK_WAIT_SECONDS);
        }
        session_close(publisher, NULL);
        session_free(publisher);
        return ok;
}

static void reconnects(const char *server_url, const char *proxied_url)
{
        RECONNECTION_STRATEGY_T *strategy = make_reconnection_strategy_user_function(
                on_reconnect, NULL, on_reconnected, on_reconnection_failed);
        if (strategy == NULL) {
                check(0, "make_reconnection_strategy_user_function returned a strategy");
                return;
        }
        reconnection_strategy_set_timeout(strategy, RECONNECT_TIMEOUT_MS);

        SESSION_LISTENER_T listener = { .on_state_changed = on_state_changed };
        SESSION_T *session = open_session(proxied_url, &listener, strategy);
        // The session keeps its own copy.
        free_reconnection_strategy(strategy);
        if (session == NULL) {
                check(0, "a session through haproxy was created");
                return;
        }
        char *id_before = session_id_to_string(session_get_id(session));
        printf("connected through haproxy: %s, session %s\n", proxied_url, id_before);

        SESSION_MESSAGE_HANDLER_T handler = { .on_message = on_message };
        DIFFUSION_ERROR_T error = { 0 };
        if (!session_subscribe(session, subscribed_path, &handler, &error)) {
                fprintf(stderr, "session_subscribe failed (%d): %s\n", error.code, error.message);
                free(error.message);
                failures++;
        }
        printf("subscribed to %s; waiting for haproxy to cut the idle connection\n", subscribed_path);

        check(wait_until(recovered, RECONNECT_WAIT_SECONDS),
              "the session went RECOVERING_RECONNECT and back to CONNECTED_ACTIVE");
        char *id_after = session_id_to_string(session_get_id(session));
        printf("session id after reconnecting: %s\n", id_after);
        check(id_before != NULL && id_after != NULL && strcmp(id_before, id_after) == 0,
              "the session id is unchanged");

        check(publish_directly(server_url), "a second session connected directly published a message");
        // The success callback runs after the listener has seen CONNECTED_ACTIVE: make sure it
        // has had its turn before session_close stops all callbacks.
        wait_until(reconnected, CALLBACK_WAIT_SECONDS);

        session_close(session, NULL);
        // No callback starts after session_close returns: the counts are final.
        pthread_mutex_lock(&mutex);
        check(messages == 1 && wrong_messages == 0,
              "the subscription made before the loss delivered the message, once");
        printf("reconnection function ran %d time(s); success callback %d, failure callback %d\n",
               attempts, successes, failures_reported);
        check(successes >= 1 && attempts >= successes, "the success callback ran after the attempts");
        check(failures_reported == 0, "reconnection was never given up");
        pthread_mutex_unlock(&mutex);

        free(id_before);
        free(id_after);
        session_free(session);
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion HAPROXY_PORT\n", argv[0]);
                return 2;
        }
        // Line-buffered so that, when captured, stdout stays in order with stderr.
        setvbuf(stdout, NULL, _IOLBF, 0);
        int haproxy_port = atoi(argv[2]);
        if (haproxy_port < 1 || haproxy_port > 65535) {
                fprintf(stderr, "bad haproxy port '%s'\n", argv[2]);
                return 2;
        }
        snprintf(subscribed_path, sizeof subscribed_path, "reconnect/%ld", (long)getpid());
        char proxied_url[64];
        snprintf(proxied_url, sizeof proxied_url, "ws://127.0.0.1:%d/diffusion", haproxy_port);

        reconnects(argv[1], proxied_url);

        // Invalid strategies are refused with NULL; freeing NULL does nothing.
        RECONNECTION_STRATEGY_T *invalid = make_reconnection_strategy_repeating_attempt(-1, 5);
        check(invalid == NULL, "make_reconnection_strategy_repeating_attempt(-1, 5) returns NULL");
        free_reconnection_strategy(invalid);

        if (failures > 0) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return EXIT_FAILURE;
        }
        printf("all checks passed\n");
        return EXIT_SUCCESS;
}
