/*
 * The C API used as a demanding application would: inside each callback the library runs, call
 * session_close, session_free, session_publish, session_subscribe, session_unsubscribe, a
 * blocking session_create and session_create_async, with each create form (blocking, async,
 * factory blocking, factory async). Run under valgrind and AddressSanitizer by `make test`.
 *
 * Each cell of the matrix checks:
 * - the call inside the callback returns what the header says it returns there;
 * - the create's result agrees with what the listener saw: a blocking create returns the
 *   session once the listener saw CONNECTED_ACTIVE, and NULL (DIFF_ERR_SESSION_CLOSED, or the
 *   failure that closed it) when a callback freed it;
 * - an async create calls exactly one of on_connected / on_error;
 * - no callback of a session starts after session_free has returned;
 * - every free_context runs exactly once.
 *
 * Usage: misuse URL [PROXY_PORT|-] [CA_FILE|-]
 *   URL          ws:// or xhr:// (plain) for every callback but the certificate validator, or
 *                wss:// or xhrs:// with CA_FILE for the certificate validator's cells
 *   PROXY_PORT   tinyproxy on 127.0.0.1 accepting user "demo", password "demo-proxy-pw", for the
 *                proxy challenge handler's cells
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

#define WAIT_SECONDS 10
#define MAX_EXTRA 8

enum where {
        IN_LISTENER_ACTIVE,
        IN_LISTENER_FAILED,
        IN_ON_CONNECTED,
        IN_ON_ERROR,
        IN_MESSAGE,
        IN_FREE_CONTEXT_UNSUBSCRIBE,
        IN_FREE_CONTEXT_CLOSE,
        IN_RECONNECT,
        IN_CHALLENGE,
        IN_VALIDATOR,
        WHERE_COUNT
};
static const char *where_names[] = { "listener(CONNECTED_ACTIVE)", "listener(CLOSED_FAILED)",
                                     "on_connected", "on_error", "message handler",
                                     "free_context(unsubscribe)", "free_context(close)", "reconnection function",
                                     "proxy challenge handler", "certificate validator" };

enum action { DO_CLOSE, DO_FREE, DO_PUBLISH, DO_SUBSCRIBE, DO_UNSUBSCRIBE, DO_CREATE, DO_CREATE_ASYNC, ACTION_COUNT };
static const char *action_names[] = { "close", "free", "publish", "subscribe", "unsubscribe", "blocking create",
                                      "async create" };

enum form { BLOCKING, ASYNC, FACTORY_BLOCKING, FACTORY_ASYNC, FORM_COUNT };
static const char *form_names[] = { "session_create", "session_create_async", "factory create",
                                    "factory async create" };

// The cell being run; callbacks read and write it.
static struct {
        enum where where;
        enum action action;
        enum form form;
        char name[160];
        SESSION_T *_Atomic session;     // from the listener's first call
        atomic_int fired;               // the target callback ran the action
        atomic_int done;                // the action has returned
        atomic_int freed;               // a callback freed the session
        atomic_int free_returned;       // ... and session_free has returned
        atomic_int saw_active;          // the listener saw CONNECTED_ACTIVE
        atomic_int created_calls;       // on_connected + on_error calls
        atomic_int late_callbacks;      // callbacks of the session after session_free returned
        pthread_mutex_t extra_mutex;
        SESSION_T *extra[MAX_EXTRA];    // sessions created inside callbacks
        int extra_count;
} cell;

static struct suite suite;
static int polling = 0;

static atomic_int contexts_made;        // subscriptions' contexts handed to the library
static atomic_int contexts_freed;       // ... and released through free_context
static atomic_int extra_async_made;     // async creates inside callbacks that returned a session
static atomic_int extra_created_calls;  // ... and their on_connected / on_error calls
static int failures = 0;
static int cells = 0;

static void fail(const char *what)
{
        printf("FAILED: %s: %s\n", cell.name, what);
        failures++;
}

static void check_error(int ok, DIFFUSION_ERROR_T *error, const char *call, int allowed1, int allowed2)
{
        if (!ok && (int)error->code != allowed1 && (int)error->code != allowed2) {
                char text[512];
                snprintf(text, sizeof text, "%s failed with %d: %s", call, error->code,
                         error->message ? error->message : "(no message)");
                fail(text);
        }
        free(error->message);
        error->message = NULL;
}

static int noop_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)session, (void)path, (void)data, (void)len, (void)context;
        return HANDLER_SUCCESS;
}

static void count_free(void *context)
{
        (void)context;
        atomic_fetch_add(&contexts_freed, 1);
}

static int extra_on_connected(SESSION_T *session)
{
        (void)session;
        atomic_fetch_add(&extra_created_calls, 1);
        return HANDLER_SUCCESS;
}

static int extra_on_error(SESSION_T *session, DIFFUSION_ERROR_T *error)
{
        (void)session, (void)error;
        atomic_fetch_add(&extra_created_calls, 1);
        return HANDLER_SUCCESS;
}

static void keep_extra(SESSION_T *session)
{
        pthread_mutex_lock(&cell.extra_mutex);
        if (cell.extra_count < MAX_EXTRA) {
                cell.extra[cell.extra_count++] = session;
                session = NULL;
        }
        pthread_mutex_unlock(&cell.extra_mutex);
        if (session != NULL) {
                session_free(session);
        }
}

// The action of the cell, on `session`, checking what each call returns.
static void perform(SESSION_T *session)
{
        DIFFUSION_ERROR_T error = { 0 };
        int ok;
        switch (cell.action) {
        case DO_CLOSE:
                if (session_close(session, &error) != 1) {
                        fail("session_close did not return 1");
                }
                free(error.message);
                break;
        case DO_FREE:
                atomic_store(&cell.freed, 1);
                session_free(session);
                atomic_store(&cell.free_returned, 1);
                break;
        case DO_PUBLISH:
                ok = session_publish(session, "misuse/published", "x", 1, &error);
                check_error(ok, &error, "session_publish", DIFF_ERR_SESSION_CLOSED, DIFF_ERR_SESSION_CLOSED);
                break;
        case DO_SUBSCRIBE: {
                SESSION_MESSAGE_HANDLER_T handler = { .on_message = noop_message, .free_context = count_free };
                atomic_fetch_add(&contexts_made, 1);
                ok = session_subscribe(session, "misuse/subscribed", &handler, &error);
                check_error(ok, &error, "session_subscribe", DIFF_ERR_SESSION_CLOSED, DIFF_ERR_SESSION_CLOSED);
                break;
        }
        case DO_UNSUBSCRIBE:
                // No such subscription: refused as an argument, or as closed.
                ok = session_unsubscribe(session, "misuse/none", &error);
                if (ok) {
                        fail("unsubscribing from a path never subscribed succeeded");
                }
                check_error(ok, &error, "session_unsubscribe", DIFF_ERR_ILLEGAL_ARGUMENT, DIFF_ERR_SESSION_CLOSED);
                break;
        case DO_CREATE: {
                SESSION_T *other = session_create(suite.url, NULL, NULL, NULL, NULL, &error);
                if (other == NULL) {
                        check_error(0, &error, "blocking create inside a callback", DIFF_ERR_ILLEGAL_STATE,
                                    DIFF_ERR_ILLEGAL_STATE);
                } else {
                        keep_extra(other);
                }
                break;
        }
        case DO_CREATE_ASYNC: {
                SESSION_CREATE_CALLBACK_T callbacks = { extra_on_connected, extra_on_error };
                SESSION_T *other = session_create_async(suite.url, NULL, NULL, NULL, NULL, &callbacks, &error);
                if (other == NULL) {
                        check_error(0, &error, "async create inside a callback", -1, -1);
                } else {
                        atomic_fetch_add(&extra_async_made, 1);
                        keep_extra(other);
                }
                break;
        }
        default:
                break;
        }
        atomic_store(&cell.done, 1);
}

// Every callback starts here: a callback of a session freed before must not start.
static void entered(SESSION_T *session)
{
        if (session != NULL && atomic_load(&cell.free_returned) && session == atomic_load(&cell.session)) {
                atomic_fetch_add(&cell.late_callbacks, 1);
        }
}

// Runs the cell's action if this callback is its target, once.
static void target(enum where where, SESSION_T *session)
{
        int expected = 0;
        if (cell.where == where && session != NULL && atomic_compare_exchange_strong(&cell.fired, &expected, 1)) {
                perform(session);
        }
}

static void on_state_changed(SESSION_T *session, SESSION_STATE_T old_state, SESSION_STATE_T new_state)
{
        (void)old_state;
        entered(session);
        SESSION_T *none = NULL;
        atomic_compare_exchange_strong(&cell.session, &none, session);
        if (new_state == CONNECTED_ACTIVE) {
                atomic_store(&cell.saw_active, 1);
        }
        if (new_state == CONNECTED_ACTIVE) {
                target(IN_LISTENER_ACTIVE, session);
        } else if (new_state == CLOSED_FAILED) {
                target(IN_LISTENER_FAILED, session);
        }
}

static int on_connected(SESSION_T *session)
{
        entered(session);
        atomic_fetch_add(&cell.created_calls, 1);
        target(IN_ON_CONNECTED, session);
        return HANDLER_SUCCESS;
}

static int on_error(SESSION_T *session, DIFFUSION_ERROR_T *error)
{
        (void)error;
        entered(session);
        atomic_fetch_add(&cell.created_calls, 1);
        target(IN_ON_ERROR, session);
        return HANDLER_SUCCESS;
}

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)path, (void)data, (void)len, (void)context;
        entered(session);
        target(IN_MESSAGE, session);
        return HANDLER_SUCCESS;
}

static void target_free_context(void *context)
{
        (void)context;
        atomic_fetch_add(&contexts_freed, 1);
        target(cell.where, atomic_load(&cell.session));
}

static RECONNECTION_ATTEMPT_ACTION_T on_reconnect(SESSION_T *session, void *args)
{
        (void)args;
        entered(session);
        target(IN_RECONNECT, session);
        return RECONNECTION_ATTEMPT_ACTION_START;
}

// The session a challenge handler or validator serves: the listener has not run yet (the first
// state it hears of is after CONNECTING), so it is the one the async create returns, published
// by the main thread (waited for up to 5 s).
static SESSION_T *created_session(void)
{
        for (int i = 0; i < 5000 && atomic_load(&cell.session) == NULL; i++) {
                usleep(1000);
        }
        return atomic_load(&cell.session);
}

static int on_challenge(const DIFFUSION_PROXY_CHALLENGE_T *challenge, DIFFUSION_PROXY_RESPONSE_T *response,
                        void *context)
{
        (void)context;
        target(IN_CHALLENGE, created_session());
        return answer_proxy_fixture(challenge, response);
}

static int validate(const char *host, const DIFFUSION_CERTIFICATE_T *chain, size_t chain_length,
                    ERROR_CODE_T verdict, const char *reason, void *context)
{
        (void)host, (void)chain, (void)chain_length, (void)reason, (void)context;
        target(IN_VALIDATOR, created_session());
        return library_verdict(verdict);
}

static void wait_until(atomic_int *flag)
{
        for (int i = 0; i < WAIT_SECONDS * 1000 && !atomic_load(flag); i++) {
                usleep(1000);
        }
}

// Waits for the session to leave CONNECTING.
static void wait_settled(SESSION_T *session)
{
        for (int i = 0; i < WAIT_SECONDS * 1000; i++) {
                SESSION_STATE_T state = session_state_get(session);
                if (state != CONNECTING && state != SESSION_STATE_UNKNOWN) {
                        return;
                }
                usleep(1000);
        }
}

// Makes the library run the cell's target callback, for the targets the application triggers.
static void trigger(SESSION_T *session)
{
        if (cell.where == IN_MESSAGE) {
                SESSION_MESSAGE_HANDLER_T handler = { .on_message = on_message, .free_context = count_free };
                atomic_fetch_add(&contexts_made, 1);
                session_subscribe(session, "misuse/message", &handler, NULL);
                session_publish(session, "misuse/message", "m", 1, NULL);
        } else if (cell.where == IN_FREE_CONTEXT_UNSUBSCRIBE || cell.where == IN_FREE_CONTEXT_CLOSE) {
                SESSION_MESSAGE_HANDLER_T handler = { .on_message = noop_message, .free_context = target_free_context };
                atomic_fetch_add(&contexts_made, 1);
                session_subscribe(session, "misuse/context", &handler, NULL);
                if (cell.where == IN_FREE_CONTEXT_UNSUBSCRIBE) {
                        session_unsubscribe(session, "misuse/context", NULL);
                } else {
                        session_close(session, NULL);
                }
        } else if (cell.where == IN_RECONNECT) {
                relay_cut(&suite.relay, 1);
        }
}

static const char *cell_url(void)
{
        switch (cell.where) {
        case IN_LISTENER_FAILED:
        case IN_ON_ERROR:
                return suite.bad_url;
        case IN_RECONNECT:
                return suite.relay_url;
        default:
                return suite.url;
        }
}

static DIFFUSION_SESSION_FACTORY_T *cell_factory(SESSION_LISTENER_T *listener, RECONNECTION_STRATEGY_T *strategy)
{
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_session_listener(factory, listener);
        diffusion_session_factory_reconnection_strategy(factory, strategy);
        if (cell.where == IN_CHALLENGE) {
                DIFFUSION_PROXY_CHALLENGE_HANDLER_T handler = { on_challenge, 2, NULL, NULL };
                DIFFUSION_PROXY_AUTHENTICATION_T *auth = diffusion_proxy_authentication_custom(&handler);
                diffusion_session_factory_http_proxy(factory, "127.0.0.1", suite.proxy_port, auth);
                diffusion_proxy_authentication_free(auth);
        }
        if (cell.where == IN_VALIDATOR) {
                DIFFUSION_CERTIFICATE_VALIDATION_T validation = { validate, NULL, NULL };
                diffusion_session_factory_certificate_authority(factory, suite.ca_file);
                diffusion_session_factory_certificate_validation(factory, &validation);
        }
        return factory;
}

// Whether the cell's target callback can run with this form at all.
static int applies(enum where where, enum form form)
{
        int async = form == ASYNC || form == FACTORY_ASYNC;
        int factory = form == FACTORY_BLOCKING || form == FACTORY_ASYNC;
        switch (where) {
        case IN_ON_CONNECTED:
        case IN_ON_ERROR:
                return async && suite.ca_file == NULL;
        // With a blocking create the application has no session pointer while these run.
        case IN_CHALLENGE:
                return factory && async && suite.proxy_port > 0 && suite.ca_file == NULL;
        case IN_VALIDATOR:
                return factory && async && suite.ca_file != NULL;
        default:
                return suite.ca_file == NULL;
        }
}

static void run_cell(enum where where, enum action action, enum form form)
{
        memset(&cell.extra, 0, sizeof cell.extra);
        cell.extra_count = 0;
        cell.where = where;
        cell.action = action;
        cell.form = form;
        snprintf(cell.name, sizeof cell.name, "%s in %s, %s over %s", action_names[action], where_names[where],
                 form_names[form], polling ? "HTTP polling" : "WebSocket");
        atomic_store(&cell.session, NULL);
        atomic_store(&cell.fired, 0);
        atomic_store(&cell.done, 0);
        atomic_store(&cell.freed, 0);
        atomic_store(&cell.free_returned, 0);
        atomic_store(&cell.saw_active, 0);
        atomic_store(&cell.created_calls, 0);
        atomic_store(&cell.late_callbacks, 0);
        cells++;
        if (getenv("MISUSE_VERBOSE") != NULL) {
                printf("cell %d: %s\n", cells, cell.name);
        }

        SESSION_LISTENER_T listener = { .on_state_changed = on_state_changed };
        SESSION_CREATE_CALLBACK_T callbacks = { on_connected, on_error };
        RECONNECTION_STRATEGY_T *strategy = make_reconnection_strategy_user_function(on_reconnect, NULL, NULL, NULL);
        reconnection_strategy_set_timeout(strategy, 5000);
        DIFFUSION_ERROR_T error = { 0 };
        int blocking = form == BLOCKING || form == FACTORY_BLOCKING;
        SESSION_T *session = NULL;

        if (form == BLOCKING || form == ASYNC) {
                if (blocking) {
                        session = session_create(cell_url(), NULL, NULL, &listener, strategy, &error);
                } else {
                        session = session_create_async(cell_url(), NULL, NULL, &listener, strategy, &callbacks,
                                                       &error);
                }
        } else {
                DIFFUSION_SESSION_FACTORY_T *factory = cell_factory(&listener, strategy);
                if (blocking) {
                        session = session_create_with_session_factory(factory, cell_url());
                } else {
                        session = session_create_async_with_session_factory(factory, &callbacks, cell_url());
                        SESSION_T *none = NULL;
                        atomic_compare_exchange_strong(&cell.session, &none, session);
                }
                if (session == NULL) {
                        session_last_error(&error);
                }
                diffusion_session_factory_free(factory);
        }
        free_reconnection_strategy(strategy);

        // What the create returns agrees with what the callbacks saw and did. An async create
        // whose callback frees the session before the create returns gives NULL too; after
        // that, the application must not use the handle it was given.
        int freed_before_return = atomic_load(&cell.freed);
        if (freed_before_return) {
                if (session != NULL && blocking) {
                        fail("the blocking create returned a session that a callback freed");
                } else if (where != IN_LISTENER_FAILED && where != IN_ON_ERROR &&
                           error.code != DIFF_ERR_SESSION_CLOSED) {
                        fail("a session freed during the create is not DIFF_ERR_SESSION_CLOSED");
                }
        } else if (blocking && atomic_load(&cell.saw_active) && session == NULL) {
                fail("the listener saw CONNECTED_ACTIVE but the blocking create returned NULL");
        } else if (!blocking && session == NULL) {
                fail("the async create returned NULL");
        }
        free(error.message);
        error.message = NULL;

        // Where the application triggers the target callback, nothing can free the session
        // before it does so; elsewhere the session is not touched until the action has returned.
        int triggered = where == IN_MESSAGE || where == IN_FREE_CONTEXT_UNSUBSCRIBE ||
                        where == IN_FREE_CONTEXT_CLOSE || where == IN_RECONNECT;
        if (triggered && session != NULL) {
                wait_settled(session);
                if (session_is_connected(session)) {
                        trigger(session);
                }
        }
        wait_until(&cell.done);
        if (where == IN_RECONNECT) {
                relay_cut(&suite.relay, 0);
        }
        if (!atomic_load(&cell.fired) && (session == NULL || !session_is_closed(session))) {
                fail("the target callback never ran");
        }

        if (session != NULL && !atomic_load(&cell.freed)) {
                session_close(session, NULL);
                session_free(session);
                atomic_store(&cell.free_returned, 1);
        }
        if (!blocking && atomic_load(&cell.created_calls) != 1) {
                char text[96];
                snprintf(text, sizeof text, "on_connected/on_error ran %d times", atomic_load(&cell.created_calls));
                fail(text);
        }
        pthread_mutex_lock(&cell.extra_mutex);
        for (int i = 0; i < cell.extra_count; i++) {
                session_close(cell.extra[i], NULL);
                session_free(cell.extra[i]);
        }
        cell.extra_count = 0;
        pthread_mutex_unlock(&cell.extra_mutex);
        // A late callback would come now, if ever: give the I/O threads a moment.
        usleep(2000);
        if (atomic_load(&cell.late_callbacks) != 0) {
                fail("a callback started after session_free returned");
        }
        if (atomic_load(&contexts_made) != atomic_load(&contexts_freed)) {
                char text[96];
                snprintf(text, sizeof text, "%d contexts given, %d released", atomic_load(&contexts_made),
                         atomic_load(&contexts_freed));
                fail(text);
                atomic_store(&contexts_freed, atomic_load(&contexts_made));
        }
}

int main(int argc, char **argv)
{
        int started = suite_start(&suite, argc, argv);
        if (started != 0) {
                return started;
        }
        polling = strncmp(suite.url, "xhr", 3) == 0;
        pthread_mutex_init(&cell.extra_mutex, NULL);

        for (int where = 0; where < WHERE_COUNT; where++) {
                for (int form = 0; form < FORM_COUNT; form++) {
                        if (!applies((enum where)where, (enum form)form)) {
                                continue;
                        }
                        for (int action = 0; action < ACTION_COUNT; action++) {
                                run_cell((enum where)where, (enum action)action, (enum form)form);
                        }
                }
        }
        relay_stop(&suite.relay);
        pthread_mutex_destroy(&cell.extra_mutex);
        if (atomic_load(&extra_created_calls) != atomic_load(&extra_async_made)) {
                printf("FAILED: %d async creates inside callbacks, %d on_connected/on_error calls\n",
                       atomic_load(&extra_async_made), atomic_load(&extra_created_calls));
                failures++;
        }
        printf("%d cells over %s: %d passed, %d failed\n", cells, polling ? "HTTP polling" : "WebSocket",
               cells - failures, failures);
        return failures == 0 ? 0 : 1;
}
