/*
 * What the benchmarks' peer clients (mqtt_client.c, mosquitto_client.c, nats_client.c) share:
 * the clock, the arguments, waiting for the bench, and the recovery mode's bookkeeping.
 *
 * Every client takes its own connection arguments, then MODE COUNT SIZE:
 *   connect COUNT SIZE   COUNT times: connect until usable, disconnect; prints µs per connect
 *   rtt COUNT SIZE       one connection publishes to its own subscription; prints each rtt in µs
 *                        (connect and rtt stop early after BUDGET_US: some take 40-400 ms each)
 *   sub COUNT SIZE       subscribes, prints "ready", counts up to COUNT messages (for at most
 *                        SUB_CAP_US, 3 s without one); prints "RECEIVED MICROSECONDS" (first
 *                        to last arrival)
 *   pub COUNT SIZE       publishes COUNT messages as fast as it can, waits until all are sent
 *                        (and acknowledged at QoS 1), exits
 *   idle COUNT SIZE      opens one connection, prints "one", waits for a line on stdin, opens
 *                        the other COUNT - 1, prints "ready", holds them until stdin closes
 *   recover COUNT SIZE   subscribes to its own topic and publishes a numbered message every 2 ms
 *                        until stdin says "stop" (the bench cuts the connection meanwhile);
 *                        prints "gap MICROSECONDS" for each pause in deliveries over 5 ms and
 *                        "lost N" for the messages published but never delivered
 */
#define _POSIX_C_SOURCE 200809L
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* How long the connect and rtt modes may run. */
#define BUDGET_US 5e6
/* How long the sub mode may count. */
#define SUB_CAP_US 10e6

static double now_us(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void sleep_us(long us)
{
        struct timespec t = { us / 1000000, (us % 1000000) * 1000 };
        nanosleep(&t, NULL);
}

static void raise_fd_limit(void)
{
        struct rlimit limit;
        if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
                limit.rlim_cur = limit.rlim_max;
                setrlimit(RLIMIT_NOFILE, &limit);
        }
}

static void say(const char *line)
{
        printf("%s\n", line);
        fflush(stdout);
}

/* Waits up to `ms` (-1: for ever) for a line on stdin or its end; returns 1 when one came. */
static int stdin_line(int ms)
{
        struct pollfd p = { 0, POLLIN, 0 };
        if (poll(&p, 1, ms) <= 0) {
                return 0;
        }
        char line[64];
        if (fgets(line, sizeof line, stdin) == NULL) {
                return 1;
        }
        return 1;
}

/* Holds until stdin closes. */
static void hold(void)
{
        char line[64];
        while (fgets(line, sizeof line, stdin) != NULL) {
        }
}

/* --- recovery: numbered messages, pauses in deliveries, losses --------------------------- */

/* Deliveries so far, the time of the first and of the last (set by each client's callback
 * through note_arrival). */
static volatile int arrived;
static volatile double arrived_at;
static double first_at;

static void note_arrival(double now)
{
        if (arrived == 0) {
                first_at = now;
        }
        arrived_at = now;
        __atomic_add_fetch(&arrived, 1, __ATOMIC_SEQ_CST);
}

/* rtt mode: waits for delivery number before + 1, printing the microseconds since start; 1 after
 * 10 s without it. */
static int await_round_trip(const char *name, int before, double start)
{
        while (arrived == before) {
                if (now_us() - start > 10e6) {
                        fprintf(stderr, "%s: a round trip's message did not come back\n", name);
                        return 1;
                }
        }
        printf("%.1f\n", arrived_at - start);
        return 0;
}

/* sub mode: counts deliveries until count, 3 s without one (30 s before the first) or
 * SUB_CAP_US; prints "RECEIVED MICROSECONDS" (first to last). */
static void count_arrivals(int count)
{
        say("ready");
        double last_change = now_us(), started = last_change;
        int seen = 0;
        while (arrived < count && now_us() - last_change < (arrived ? 3e6 : 30e6)
               && now_us() - started < SUB_CAP_US) {
                if (arrived != seen) {
                        seen = arrived;
                        last_change = now_us();
                }
                sleep_us(1000);
        }
        printf("%d %.1f\n", arrived, arrived_at - first_at);
}

#define RECOVER_MAX 100000
#define RECOVER_GAP_US 5000.0
static unsigned char recover_seen[RECOVER_MAX];
static double recover_last, recover_gaps[1000];
static int recover_gap_count, recover_sent;

/* Called on each delivery of a recovery message; the payload starts with its number. */
static void recover_arrived(const void *payload, int len)
{
        char text[16] = { 0 };
        memcpy(text, payload, len < 15 ? len : 15);
        int n = atoi(text);
        double now = now_us();
        if (recover_last > 0 && now - recover_last > RECOVER_GAP_US && recover_gap_count < 1000) {
                recover_gaps[recover_gap_count++] = now - recover_last;
        }
        recover_last = now;
        if (n >= 0 && n < RECOVER_MAX) {
                recover_seen[n] = 1;
        }
}

/* Fills `payload` (at least 16 bytes) with the next message's number. */
static void recover_number(char *payload, int size)
{
        memset(payload, ' ', size);
        char text[16];
        int len = snprintf(text, sizeof text, "%d", recover_sent);
        memcpy(payload, text, len);
}

static void recover_report(void)
{
        int lost = 0;
        for (int i = 0; i < recover_sent && i < RECOVER_MAX; i++) {
                lost += !recover_seen[i];
        }
        for (int i = 0; i < recover_gap_count; i++) {
                printf("gap %.1f\n", recover_gaps[i]);
        }
        printf("lost %d\n", lost);
        fflush(stdout);
}
