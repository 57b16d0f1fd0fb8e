/*
 * Publish and subscribe between two sessions. Session A subscribes to "demo/" (everything below
 * it) and to "demo/news"; session B publishes 100 numbered messages on "demo/prices" and one on
 * "demo/news". A receives each exactly once, the prices in order. Each handler's context is
 * released through free_context exactly once: one after session_unsubscribe, the other when A
 * closes. Also shows two errors: a NULL path and publishing on a closed session.
 *
 * Usage: pubsub ws://host:port/diffusion
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.h"

#define PRICE_COUNT 100
// How long the main thread waits for messages or for a free_context call.
#define WAIT_SECONDS 10

// What one handler has received. Allocated per subscription and freed by its free_context.
struct inbox {
        const char *name;       // for messages: "A demo/" or "A demo/news"
        int id;                 // index into free_calls
        pthread_mutex_t mutex;
        pthread_cond_t cond;
        int ready;              // A's own "demo/ready" messages
        int prices;             // "demo/prices" messages, each checked against the next number
        int prices_out_of_order;
        int news;
        int unexpected;         // anything else
};

struct counts {
        int ready, prices, prices_out_of_order, news, unexpected;
};

// free_context calls per inbox; they outlive the inboxes they count.
enum { PREFIX_INBOX, NEWS_INBOX, INBOX_COUNT };
static pthread_mutex_t free_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t free_cond = PTHREAD_COND_INITIALIZER;
static int free_calls[INBOX_COUNT];

static int failures = 0;

static void check(int condition, const char *what)
{
        printf("%s: %s\n", condition ? "ok" : "FAILED", what);
        if (!condition) {
                failures++;
        }
}

static struct inbox *inbox_create(const char *name, int id)
{
        struct inbox *inbox = calloc(1, sizeof *inbox);
        if (inbox == NULL) {
                return NULL;
        }
        inbox->name = name;
        inbox->id = id;
        pthread_mutex_init(&inbox->mutex, NULL);
        pthread_cond_init(&inbox->cond, NULL);
        return inbox;
}

// The handlers' free_context: the library calls it once the handler is no longer used.
static void inbox_free(void *context)
{
        struct inbox *inbox = context;
        int id = inbox->id;
        printf("free_context: %s released\n", inbox->name);
        pthread_mutex_destroy(&inbox->mutex);
        pthread_cond_destroy(&inbox->cond);
        free(inbox);

        pthread_mutex_lock(&free_mutex);
        free_calls[id]++;
        pthread_cond_broadcast(&free_cond);
        pthread_mutex_unlock(&free_mutex);
}

static int on_message(SESSION_T *session, const char *path, const void *data, size_t len, void *context)
{
        (void)session;
        struct inbox *inbox = context;
        // `data` is not NUL-terminated: copy it to read the number of a price.
        char text[64];
        size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
        memcpy(text, data, n);
        text[n] = '\0';

        pthread_mutex_lock(&inbox->mutex);
        if (strcmp(path, "demo/prices") == 0) {
                int number = -1;
                if (sscanf(text, "price %d", &number) != 1 || number != inbox->prices + 1) {
                        printf("%s: out of order on %s: \"%s\" after %d\n", inbox->name, path, text,
                               inbox->prices);
                        inbox->prices_out_of_order++;
                }
                inbox->prices++;
        } else if (strcmp(path, "demo/news") == 0) {
                printf("%s: %s \"%s\"\n", inbox->name, path, text);
                inbox->news++;
        } else if (strcmp(path, "demo/ready") == 0) {
                inbox->ready++;
        } else {
                printf("%s: unexpected message on %s\n", inbox->name, path);
                inbox->unexpected++;
        }
        pthread_cond_broadcast(&inbox->cond);
        pthread_mutex_unlock(&inbox->mutex);
        return HANDLER_SUCCESS;
}

static struct timespec deadline_in(int seconds)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += seconds;
        return deadline;
}

// Waits until the inbox holds at least `ready` ready messages, `prices` prices and `news` news,
// or the deadline passes; returns what it holds then.
static struct counts wait_for(struct inbox *inbox, int ready, int prices, int news)
{
        struct timespec deadline = deadline_in(WAIT_SECONDS);
        int rc = 0;
        pthread_mutex_lock(&inbox->mutex);
        while ((inbox->ready < ready || inbox->prices < prices || inbox->news < news) && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&inbox->cond, &inbox->mutex, &deadline);
        }
        struct counts counts = { inbox->ready, inbox->prices, inbox->prices_out_of_order, inbox->news,
                                 inbox->unexpected };
        pthread_mutex_unlock(&inbox->mutex);
        return counts;
}

// Waits until the inbox `id` has been released, or the deadline passes; returns its free count.
static int wait_for_free(int id)
{
        struct timespec deadline = deadline_in(WAIT_SECONDS);
        int rc = 0;
        pthread_mutex_lock(&free_mutex);
        while (free_calls[id] == 0 && rc != ETIMEDOUT) {
                rc = pthread_cond_timedwait(&free_cond, &free_mutex, &deadline);
        }
        int calls = free_calls[id];
        pthread_mutex_unlock(&free_mutex);
        return calls;
}

static int free_count(int id)
{
        pthread_mutex_lock(&free_mutex);
        int calls = free_calls[id];
        pthread_mutex_unlock(&free_mutex);
        return calls;
}

static int publish(SESSION_T *session, const char *path, const char *text)
{
        DIFFUSION_ERROR_T error = { 0 };
        if (!session_publish(session, path, text, strlen(text), &error)) {
                fprintf(stderr, "session_publish(%s) failed (%d): %s\n", path, error.code, error.message);
                free(error.message);
                return 0;
        }
        return 1;
}

static int subscribe(SESSION_T *session, const char *path, struct inbox *inbox)
{
        SESSION_MESSAGE_HANDLER_T handler = {
                .on_message = on_message,
                .context = inbox,
                .free_context = inbox_free
        };
        DIFFUSION_ERROR_T error = { 0 };
        // On failure free_context runs at once: the inbox is gone either way.
        if (!session_subscribe(session, path, &handler, &error)) {
                fprintf(stderr, "session_subscribe(%s) failed (%d): %s\n", path, error.code, error.message);
                free(error.message);
                return 0;
        }
        printf("A subscribed to %s\n", path);
        return 1;
}

// `call` (a session_publish) must fail with `expected`; prints the error.
static void expect_publish_error(SESSION_T *session, const char *path, const char *call,
                                 ERROR_CODE_T expected, const char *what)
{
        DIFFUSION_ERROR_T error = { 0 };
        int rc = session_publish(session, path, "x", 1, &error);
        printf("%s -> %d, error %d: %s\n", call, rc, error.code,
               error.message != NULL ? error.message : "(no message)");
        check(rc == 0 && error.code == expected, what);
        free(error.message);
}

static SESSION_T *open_session(const char *url, const char *principal, const char *password)
{
        CREDENTIALS_T *credentials = password != NULL ? credentials_create_password(password) : NULL;
        DIFFUSION_ERROR_T error = { 0 };
        SESSION_T *session = session_create(url, principal, credentials, NULL, NULL, &error);
        credentials_free(credentials);
        if (session == NULL) {
                fprintf(stderr, "session_create failed (%d): %s\n", error.code, error.message);
                free(error.message);
        }
        return session;
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr, "usage: %s ws://host:port/diffusion\n", argv[0]);
                return 2;
        }
        const char *url = argv[1];
        // Line-buffered so that, when captured, stdout stays in order with stderr.
        setvbuf(stdout, NULL, _IOLBF, 0);

        SESSION_T *a = open_session(url, "alice", "secret");
        SESSION_T *b = open_session(url, NULL, NULL);   // anonymous
        if (a == NULL || b == NULL) {
                session_free(a);
                session_free(b);
                return EXIT_FAILURE;
        }
        printf("A (alice) and B (anonymous) connected\n");

        struct inbox *all = inbox_create("A demo/", PREFIX_INBOX);
        struct inbox *news = inbox_create("A demo/news", NEWS_INBOX);
        // A failed session_subscribe releases its inbox at once, a successful one when A is freed.
        int subscribed = 0;
        if (all == NULL || news == NULL) {
                fprintf(stderr, "out of memory\n");
                if (all != NULL) {
                        inbox_free(all);
                }
                if (news != NULL) {
                        inbox_free(news);
                }
        } else if (!subscribe(a, "demo/", all)) {
                inbox_free(news);
        } else {
                subscribed = subscribe(a, "demo/news", news);
        }
        if (!subscribed) {
                session_free(a);
                session_free(b);
                return EXIT_FAILURE;
        }

        // Subscriptions take effect when the server reads them. A's own message reaches A after
        // its subscriptions, so once it arrives B's messages cannot overtake them.
        publish(a, "demo/ready", "A is ready");
        struct counts seen = wait_for(all, 1, 0, 0);
        check(seen.ready == 1, "A received its own demo/ready: its subscriptions are in place");

        int published = 0;
        for (int i = 1; i <= PRICE_COUNT; i++) {
                char text[32];
                snprintf(text, sizeof text, "price %d", i);
                published += publish(b, "demo/prices", text);
        }
        published += publish(b, "demo/news", "markets are open");
        printf("B published %d messages (%d on demo/prices, 1 on demo/news)\n", published, PRICE_COUNT);
        check(published == PRICE_COUNT + 1, "every session_publish succeeded");

        seen = wait_for(all, 1, PRICE_COUNT, 1);
        printf("A demo/ received %d prices (%d out of order), %d news, %d other\n", seen.prices,
               seen.prices_out_of_order, seen.news, seen.unexpected);
        check(seen.prices == PRICE_COUNT && seen.prices_out_of_order == 0,
              "A demo/ received all 100 prices exactly once, in order");
        check(seen.news == 1 && seen.ready == 1 && seen.unexpected == 0,
              "A demo/ received the news exactly once and nothing else");
        // The server sends the news to A once; both of A's handlers that cover it run.
        struct counts news_seen = wait_for(news, 0, 0, 1);
        check(news_seen.news == 1 && news_seen.prices == 0 && news_seen.ready == 0,
              "A demo/news received only the news, once");

        expect_publish_error(b, NULL, "session_publish(B, NULL path)", DIFF_ERR_ILLEGAL_ARGUMENT,
                             "a NULL path gives DIFF_ERR_ILLEGAL_ARGUMENT");

        // Unsubscribing releases the handler's context, once no call to it is running; the
        // inbox must not be touched after that.
        DIFFUSION_ERROR_T error = { 0 };
        if (!session_unsubscribe(a, "demo/", &error)) {
                fprintf(stderr, "session_unsubscribe failed (%d): %s\n", error.code, error.message);
                free(error.message);
                failures++;
        }
        all = NULL;
        check(wait_for_free(PREFIX_INBOX) == 1, "session_unsubscribe released A demo/'s context");

        session_close(b, NULL);
        expect_publish_error(b, "demo/prices", "session_publish(B closed, \"demo/prices\")",
                             DIFF_ERR_SESSION_CLOSED, "publishing on a closed session gives DIFF_ERR_SESSION_CLOSED");
        session_free(b);

        check(free_count(NEWS_INBOX) == 0, "A demo/news's context is still in use while A is open");
        session_close(a, NULL);
        news = NULL;
        check(wait_for_free(NEWS_INBOX) == 1, "session_close released A demo/news's context");
        session_free(a);
        check(free_count(PREFIX_INBOX) == 1 && free_count(NEWS_INBOX) == 1,
              "each free_context ran exactly once");

        if (failures > 0) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return EXIT_FAILURE;
        }
        printf("all checks passed\n");
        return EXIT_SUCCESS;
}
