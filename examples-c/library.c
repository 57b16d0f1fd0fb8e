/*
 * The library as a whole: its version, and its log routed into the application's own logger.
 *
 * Checks that libsession_version() agrees with the LIBSESSION_VERSION macros; that a log callback
 * at LIBSESSION_LOG_TRACE hears sessions opened with a password, through a proxy with Basic
 * authentication, and with a wrong password, without any credential in any line; that a level
 * filters; that once libsession_set_log_callback returns, the previous callback is never called
 * again, while other threads open sessions and the callback is swapped thousands of times.
 *
 * Usage: library ws://host:port/diffusion PROXY_PORT
 *        (the server accepts alice/secret; the proxy user "demo", password "demo-proxy-pw")
 */
#define _DEFAULT_SOURCE

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session.h"

#define STRINGIFY(x) #x
#define VERSION_OF(major, minor, patch) STRINGIFY(major) "." STRINGIFY(minor) "." STRINGIFY(patch)

static int failures;

static void check(int ok, const char *what)
{
        printf("%s: %s\n", ok ? "ok" : "FAILED", what);
        if (!ok) {
                failures++;
        }
}

// What a log callback collected. The callback runs on several threads at once.
struct log {
        pthread_mutex_t mutex;
        atomic_int active;              // cleared once the callback has been replaced
        atomic_int calls_after_replaced;
        int lines[LIBSESSION_LOG_TRACE + 1];
        int out_of_range;
        char leaked[256];               // the first line that held a credential
};

static const char *const SECRETS[] = {
        "secret",                       // alice's password
        "demo-proxy-pw",                // the proxy's password
        "wrong-password",
        "YWxpY2U6c2VjcmV0",             // base64("alice:secret")
        "ZGVtbzpkZW1vLXByb3h5LXB3",     // base64("demo:demo-proxy-pw")
};

static void collect(LIBSESSION_LOG_LEVEL_T level, const char *target, const char *message, void *context)
{
        struct log *log = context;
        if (!atomic_load(&log->active)) {
                atomic_fetch_add(&log->calls_after_replaced, 1);
        }
        pthread_mutex_lock(&log->mutex);
        if (level >= LIBSESSION_LOG_ERROR && level <= LIBSESSION_LOG_TRACE && target != NULL && message != NULL) {
                log->lines[level]++;
        } else {
                log->out_of_range++;
        }
        for (size_t i = 0; message != NULL && i < sizeof SECRETS / sizeof SECRETS[0]; i++) {
                if (strstr(message, SECRETS[i]) != NULL && log->leaked[0] == '\0') {
                        snprintf(log->leaked, sizeof log->leaked, "%s", message);
                }
        }
        pthread_mutex_unlock(&log->mutex);
}

static void log_init(struct log *log)
{
        memset(log, 0, sizeof *log);
        pthread_mutex_init(&log->mutex, NULL);
        atomic_store(&log->active, 1);
}

static int total(struct log *log, int from, int to)
{
        pthread_mutex_lock(&log->mutex);
        int sum = 0;
        for (int level = from; level <= to; level++) {
                sum += log->lines[level];
        }
        pthread_mutex_unlock(&log->mutex);
        return sum;
}

static SESSION_T *open_session(const char *url, int proxy_port, const char *password)
{
        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        diffusion_session_factory_principal(factory, "alice");
        diffusion_session_factory_password(factory, password);
        diffusion_session_factory_no_reconnection(factory);
        if (proxy_port > 0) {
                DIFFUSION_PROXY_AUTHENTICATION_T *auth = diffusion_proxy_authentication_basic("demo", "demo-proxy-pw");
                diffusion_session_factory_http_proxy(factory, "127.0.0.1", proxy_port, auth);
                diffusion_proxy_authentication_free(auth);
        }
        SESSION_T *session = session_create_with_session_factory(factory, url);
        diffusion_session_factory_free(factory);
        return session;
}

static int open_and_close(const char *url, int proxy_port, const char *password)
{
        SESSION_T *session = open_session(url, proxy_port, password);
        int opened = session != NULL;
        if (session != NULL) {
                session_close(session, NULL);
        }
        session_free(session);
        return opened;
}

struct opener {
        const char *url;
        atomic_int *stop;
        atomic_int opened;
};

static void *keep_opening(void *arg)
{
        struct opener *opener = arg;
        while (!atomic_load(opener->stop)) {
                atomic_fetch_add(&opener->opened, open_and_close(opener->url, 0, "secret"));
        }
        return NULL;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion PROXY_PORT\n", argv[0]);
                return 2;
        }
        const char *url = argv[1];
        int proxy_port = atoi(argv[2]);

        // The version.
        const char *version = libsession_version();
        printf("libsession %s (header %s)\n", version, LIBSESSION_VERSION);
        check(version != NULL && strcmp(version, LIBSESSION_VERSION) == 0, "libsession_version() is LIBSESSION_VERSION");
        check(strcmp(LIBSESSION_VERSION, VERSION_OF(LIBSESSION_VERSION_MAJOR, LIBSESSION_VERSION_MINOR,
                                                     LIBSESSION_VERSION_PATCH)) == 0,
              "LIBSESSION_VERSION is MAJOR.MINOR.PATCH");

        // Everything, down to TRACE, with credentials in play.
        struct log trace;
        log_init(&trace);
        libsession_set_log_callback(LIBSESSION_LOG_TRACE, collect, &trace);
        check(open_and_close(url, 0, "secret"), "a session with a password opens");
        check(open_and_close(url, proxy_port, "secret"), "a session through the proxy opens");
        check(!open_and_close(url, 0, "wrong-password"), "a wrong password is refused");
        libsession_set_log_callback(LIBSESSION_LOG_TRACE, NULL, NULL);
        atomic_store(&trace.active, 0);
        printf("lines at TRACE: error %d, warn %d, info %d, debug %d, trace %d\n", trace.lines[1], trace.lines[2],
               trace.lines[3], trace.lines[4], trace.lines[5]);
        check(total(&trace, LIBSESSION_LOG_DEBUG, LIBSESSION_LOG_TRACE) > 0, "TRACE hears debug and trace lines");
        check(trace.out_of_range == 0, "every line has a level, a target and a message");
        check(trace.leaked[0] == '\0', "no line holds a credential");
        if (trace.leaked[0] != '\0') {
                fprintf(stderr, "credential in: %s\n", trace.leaked);
        }

        // A level filters: at WARN nothing of a session's ordinary life.
        struct log warn;
        log_init(&warn);
        libsession_set_log_callback(LIBSESSION_LOG_WARN, collect, &warn);
        check(open_and_close(url, proxy_port, "secret"), "a session opens with the callback at WARN");
        libsession_set_log_callback(LIBSESSION_LOG_WARN, NULL, NULL);
        check(total(&warn, LIBSESSION_LOG_INFO, LIBSESSION_LOG_TRACE) == 0, "WARN hears no info, debug or trace");

        // Removed: nothing more.
        int before = total(&trace, LIBSESSION_LOG_ERROR, LIBSESSION_LOG_TRACE);
        check(open_and_close(url, 0, "secret"), "a session opens with no callback");
        check(total(&trace, LIBSESSION_LOG_ERROR, LIBSESSION_LOG_TRACE) == before, "a removed callback hears nothing");

        // Swapped while other threads log: once the swap returns, the old callback never runs.
        enum { OPENERS = 2, SWAPS = 2000, OPENED = 20 };
        static struct log logs[2];
        log_init(&logs[0]);
        log_init(&logs[1]);
        atomic_int stop = 0;
        struct opener openers[OPENERS];
        pthread_t threads[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
                openers[i].url = url;
                openers[i].stop = &stop;
                atomic_init(&openers[i].opened, 0);
                pthread_create(&threads[i], NULL, keep_opening, &openers[i]);
        }
        // At least SWAPS swaps, and on until OPENED sessions have opened meanwhile.
        for (int i = 0; i < SWAPS || atomic_load(&openers[0].opened) + atomic_load(&openers[1].opened) < OPENED; i++) {
                struct log *next = &logs[i % 2], *previous = &logs[(i + 1) % 2];
                atomic_store(&next->active, 1);
                libsession_set_log_callback(LIBSESSION_LOG_TRACE, collect, next);
                atomic_store(&previous->active, 0);
                // Each swap waits for calls in progress; back to back, the swaps would keep the
                // threads that log waiting (under valgrind, for minutes).
                usleep(50);
        }
        libsession_set_log_callback(LIBSESSION_LOG_TRACE, NULL, NULL);
        atomic_store(&logs[0].active, 0);
        atomic_store(&logs[1].active, 0);
        atomic_store(&stop, 1);
        int opened = 0;
        for (int i = 0; i < OPENERS; i++) {
                pthread_join(threads[i], NULL);
                opened += atomic_load(&openers[i].opened);
        }
        int heard = total(&logs[0], 1, 5) + total(&logs[1], 1, 5);
        printf("%d swaps while %d sessions opened: %d lines heard\n", SWAPS, opened, heard);
        check(opened > 0 && heard > 0, "sessions opened and were heard during the swaps");
        check(atomic_load(&logs[0].calls_after_replaced) + atomic_load(&logs[1].calls_after_replaced) == 0,
              "no callback ran after it was replaced");
        for (int i = 0; i < 2; i++) {
                pthread_mutex_destroy(&logs[i].mutex);
        }
        pthread_mutex_destroy(&trace.mutex);
        pthread_mutex_destroy(&warn.mutex);

        printf("%s\n", failures == 0 ? "all passed" : "some checks failed");
        return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
