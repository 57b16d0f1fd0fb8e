/*
 * Races between the application's threads and the library's callbacks, repeated many times:
 *
 * 1. session_free on the application's thread while a callback of the session runs on a
 *    libsession thread: the state listener, on_connected, on_error, a message handler and its
 *    free_context, the reconnection function, a proxy challenge handler, a certificate
 *    validation callback. Each callback reads the session's user context and id (or its own
 *    context) while the application frees the session; it must always see its own session, and
 *    none may start after session_free has returned.
 * 2. session_close against session_publish from 8 threads: every publish returns 1, or 0 with
 *    DIFF_ERR_SESSION_CLOSED (or DIFF_ERR_QUEUE_FULL), and nothing crashes.
 *
 * Run under valgrind and AddressSanitizer by `make test`, which catch any use of freed memory.
 *
 * Usage: races URL [PROXY_PORT|-] [CA_FILE|-]
 *   URL          ws:// for every race but the certificate validator's, or wss:// with CA_FILE
 *                for that one
 *   PROXY_PORT   tinyproxy on 127.0.0.1 accepting user "demo", password "demo-proxy-pw", for
 *                the proxy challenge handler's race
 * RACE_ITERATIONS sets the rounds of each race (default 2000).
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"
#include "session.h"

#define PUBLISHERS 8

static struct suite suite;
static int failures = 0;

// The user context of the session being freed; NULL once session_free has returned.
static void *_Atomic live_context;
static atomic_int wrong_context;        // a callback saw another session's context, or none
static atomic_int late;                 // a callback started after session_free returned
static atomic_int callbacks_run;

static void fail(const char *what)
{
        printf("FAILED: %s\n", what);
        failures++;
}

// Busy for up to `max_us` microseconds, so that the other thread finds the callback running.
static void linger(unsigned max_us)
{
        struct timespec start, now;
        unsigned wait = (unsigned)rand() % (max_us + 1);
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
                clock_gettime(CLOCK_MONOTONIC, &now);
        } while ((unsigned)((now.tv_sec - start.tv_sec) * 1000000 + (now.tv_nsec - start.tv_nsec) / 1000) < wait);
}

// What every callback does with the session it is given, while the application may free it.
static void use(SESSION_T *session)
{
        atomic_fetch_add(&callbacks_run, 1);
        void *live = atomic_load(&live_context);
        if (live == NULL) {
                atomic_fetch_add(&late, 1);
                return;
        }
        const SESSION_ID_T *id = session_get_id(session);
        char *text = id != NULL ? session_id_to_string(id) : NULL;
        free(text);
        linger(50);
        if (session_get_user_context(session) != live) {
                atomic_fetch_add(&wrong_context, 1);
        }
}

static void on_state_changed(SESSION_T *session, SESSION_STATE_T old_state, SESSION_STATE_T new_state)
{
        (void)old_state;
        if (new_state != CLOSED_BY_CLIENT) {
                use(session);
        }
}

static int on_connected(SESSION_T *session)
{
        use(session);
        return HANDLER_SUCCESS;
}

static int on_error(SESSION_T *session, DIFFUSION_ERROR_T *error)
{
        (void)error;
        use(session);
        return HANDLER_SUCCESS;
}

// A callback with no session argument, given the round's context as its own.
static void use_context(void *context)
{
        atomic_fetch_add(&callbacks_run, 1);
        if (atomic_load(&live_context) != context) {
                atomic_fetch_add(&late, 1);
        }
        linger(50);
}

static void on_free_context(void *context)
{
        use_context(context);
}

static int on_challenge(const DIFFUSION_PROXY_CHALLENGE_T *challenge, DIFFUSION_PROXY_RESPONSE_T *response,
                        void *context)
{
        use_context(context);
        return answer_proxy_fixture(challenge, response);
}

static int validate(const char *host, const DIFFUSION_CERTIFICATE_T *chain, size_t chain_length,
                    ERROR_CODE_T verdict, const char *reason, void *context)
{
        (void)host, (void)chain, (void)chain_length, (void)reason;
        use_context(context);
        return library_verdict(verdict);
}

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)path, (void)data, (void)len, (void)context;
        use(session);
        return HANDLER_SUCCESS;
}

static RECONNECTION_ATTEMPT_ACTION_T on_reconnect(SESSION_T *session, void *args)
{
        (void)args;
        use(session);
        return RECONNECTION_ATTEMPT_ACTION_START;
}

enum target {
        LISTENER,
        ON_CONNECTED,
        ON_ERROR,
        MESSAGE_HANDLER,
        RECONNECTION_FUNCTION,
        CHALLENGE_HANDLER,
        VALIDATOR,
        TARGET_COUNT
};
static const char *target_names[] = { "the state listener", "on_connected", "on_error",
                                      "a message handler and its free_context", "the reconnection function",
                                      "a proxy challenge handler", "a certificate validation callback" };

// Whether the race of `target` runs with the arguments given.
static int runs(enum target target)
{
        switch (target) {
        case CHALLENGE_HANDLER:
                return suite.proxy_port > 0 && suite.ca_file == NULL;
        case VALIDATOR:
                return suite.ca_file != NULL;
        default:
                return suite.ca_file == NULL;
        }
}

// An async session from a factory whose proxy challenge handler or certificate validation
// callback (as `target` says) gets `context` as its own.
static SESSION_T *create_from_factory(enum target target, void *context)
{
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        SESSION_CREATE_CALLBACK_T callbacks = { on_connected, on_error };
        diffusion_session_factory_user_context(factory, context);
        if (target == CHALLENGE_HANDLER) {
                DIFFUSION_PROXY_CHALLENGE_HANDLER_T handler = { on_challenge, 2, context, NULL };
                DIFFUSION_PROXY_AUTHENTICATION_T *auth = diffusion_proxy_authentication_custom(&handler);
                diffusion_session_factory_http_proxy(factory, "127.0.0.1", suite.proxy_port, auth);
                diffusion_proxy_authentication_free(auth);
        } else {
                DIFFUSION_CERTIFICATE_VALIDATION_T validation = { validate, context, NULL };
                diffusion_session_factory_certificate_authority(factory, suite.ca_file);
                diffusion_session_factory_certificate_validation(factory, &validation);
        }
        SESSION_T *session = session_create_async_with_session_factory(factory, &callbacks, suite.url);
        diffusion_session_factory_free(factory);
        return session;
}

// One session freed while `target` may be running.
static void free_during(enum target target)
{
        int *context = malloc(sizeof *context);
        atomic_store(&live_context, context);
        SESSION_LISTENER_T listener = { .on_state_changed = on_state_changed };
        SESSION_CREATE_CALLBACK_T callbacks = { on_connected, on_error };
        DIFFUSION_ERROR_T error = { 0 };
        SESSION_T *session = NULL;
        if (target == LISTENER || target == ON_CONNECTED || target == ON_ERROR) {
                const char *to = target == ON_ERROR ? suite.bad_url : suite.url;
                session = session_create_async_with_user_context(to, NULL, NULL, &listener, NULL, &callbacks,
                                                                 context, &error);
                linger(300);
        } else if (target == CHALLENGE_HANDLER || target == VALIDATOR) {
                session = create_from_factory(target, context);
                if (session == NULL) {
                        session_last_error(&error);
                }
                linger(1000);
        } else if (target == MESSAGE_HANDLER) {
                session = session_create_with_user_context(suite.url, NULL, NULL, NULL, NULL, context, &error);
                if (session != NULL) {
                        // The handler's free_context, too, must run before session_free returns.
                        SESSION_MESSAGE_HANDLER_T handler = { .on_message = on_message, .context = context, .free_context = on_free_context };
                        session_subscribe(session, "races/self", &handler, NULL);
                        for (int i = 0; i < 20; i++) {
                                session_publish(session, "races/self", "m", 1, NULL);
                        }
                        linger(300);
                }
        } else {
                RECONNECTION_STRATEGY_T *strategy =
                        make_reconnection_strategy_user_function(on_reconnect, NULL, NULL, NULL);
                session = session_create_with_user_context(suite.relay_url, NULL, NULL, NULL, strategy, context,
                                                           &error);
                free_reconnection_strategy(strategy);
                if (session != NULL) {
                        relay_cut(&suite.relay, 1);
                        // Takes the session's task up at once, if it is parked, to find the loss.
                        session_publish(session, "races/self", "m", 1, NULL);
                        linger(3000);
                }
        }
        if (session == NULL) {
                printf("cannot create a session (%d): %s\n", error.code, error.message);
                free(error.message);
                failures++;
        }
        session_free(session);
        atomic_store(&live_context, NULL);
        free(context);
        if (target == RECONNECTION_FUNCTION) {
                relay_cut(&suite.relay, 0);
        }
}

// Race 2: publishers and a closing thread.
static SESSION_T *_Atomic publishing_on;
static pthread_barrier_t start_line, finish_line;
static atomic_int published, refused_closed, refused_full, refused_other;
static atomic_int stopping;

static void *publisher(void *arg)
{
        (void)arg;
        for (;;) {
                pthread_barrier_wait(&start_line);
                if (atomic_load(&stopping)) {
                        return NULL;
                }
                SESSION_T *session = atomic_load(&publishing_on);
                for (;;) {
                        DIFFUSION_ERROR_T error = { 0 };
                        if (session_publish(session, "races/published", "payload", 7, &error)) {
                                atomic_fetch_add(&published, 1);
                                continue;
                        }
                        free(error.message);
                        if (error.code == DIFF_ERR_QUEUE_FULL) {
                                // As the error says: try again when the session catches up.
                                atomic_fetch_add(&refused_full, 1);
                                usleep(20);
                                continue;
                        }
                        if (error.code == DIFF_ERR_SESSION_CLOSED) {
                                atomic_fetch_add(&refused_closed, 1);
                        } else {
                                atomic_fetch_add(&refused_other, 1);
                        }
                        break;
                }
                pthread_barrier_wait(&finish_line);
        }
}

// Race 2: `iterations` sessions, each closed while 8 threads publish on it.
static void close_against_publishers(int iterations)
{
        pthread_t threads[PUBLISHERS];
        pthread_barrier_init(&start_line, NULL, PUBLISHERS + 1);
        pthread_barrier_init(&finish_line, NULL, PUBLISHERS + 1);
        for (int i = 0; i < PUBLISHERS; i++) {
                pthread_create(&threads[i], NULL, publisher, NULL);
        }
        for (int i = 0; i < iterations; i++) {
                DIFFUSION_ERROR_T error = { 0 };
                SESSION_T *session = session_create(suite.url, NULL, NULL, NULL, NULL, &error);
                if (session == NULL) {
                        printf("cannot create a session (%d): %s\n", error.code, error.message);
                        free(error.message);
                        failures++;
                        break;
                }
                atomic_store(&publishing_on, session);
                pthread_barrier_wait(&start_line);
                linger(500);
                session_close(session, NULL);
                pthread_barrier_wait(&finish_line);
                session_free(session);
        }
        atomic_store(&stopping, 1);
        pthread_barrier_wait(&start_line);
        for (int i = 0; i < PUBLISHERS; i++) {
                pthread_join(threads[i], NULL);
        }
        pthread_barrier_destroy(&start_line);
        pthread_barrier_destroy(&finish_line);
        printf("session_close against session_publish from %d threads: %d sessions, %d published, "
               "%d refused as closed, %d as queue full\n",
               PUBLISHERS, iterations, atomic_load(&published), atomic_load(&refused_closed),
               atomic_load(&refused_full));
        if (atomic_load(&refused_other) != 0) {
                fail("a publish was refused with another code than SESSION_CLOSED or QUEUE_FULL");
        }
        if (atomic_load(&refused_closed) != PUBLISHERS * iterations) {
                fail("not every publisher saw the session closed");
        }
}

int main(int argc, char **argv)
{
        int started = suite_start(&suite, argc, argv);
        if (started != 0) {
                return started;
        }
        int iterations = 2000;
        if (getenv("RACE_ITERATIONS") != NULL) {
                iterations = atoi(getenv("RACE_ITERATIONS"));
        }
        srand((unsigned)time(NULL));

        for (int target = 0; target < TARGET_COUNT; target++) {
                if (!runs((enum target)target)) {
                        continue;
                }
                // Reconnections and connections through a proxy or TLS take milliseconds: fewer.
                int slow = target == RECONNECTION_FUNCTION || target == CHALLENGE_HANDLER || target == VALIDATOR;
                int rounds = slow ? iterations / 10 + 1 : iterations;
                atomic_store(&callbacks_run, 0);
                for (int i = 0; i < rounds; i++) {
                        free_during((enum target)target);
                }
                printf("session_free against %s: %d rounds, %d callbacks ran\n", target_names[target], rounds,
                       atomic_load(&callbacks_run));
        }
        if (atomic_load(&wrong_context) != 0) {
                fail("a callback saw the wrong user context");
        }
        if (atomic_load(&late) != 0) {
                fail("a callback started after session_free returned");
        }

        if (suite.ca_file == NULL) {
                close_against_publishers(iterations);
        }
        relay_stop(&suite.relay);
        printf(failures == 0 ? "all races passed\n" : "%d races failed\n", failures);
        return failures == 0 ? 0 : 1;
}
