/*
 * libmosquitto client for the benchmarks, against mosquitto over TCP.
 *
 *   mosquitto_client PORT QOS MODE COUNT SIZE
 *
 * MODE as in peer_common.h. The network loop runs on libmosquitto's own thread
 * (mosquitto_loop_start); in the recovery mode the session is persistent (clean session
 * false) and the loop reconnects by itself (after 10 ms).
 */
#include "peer_common.h"
#include <mosquitto.h>
#include <errno.h>
#include <sched.h>

static int port, qos, size, recovering;
static volatile int connected, subscribed, published;

static void on_connect(struct mosquitto *m, void *context, int rc)
{
        (void)m;
        (void)context;
        connected = rc == 0 ? 1 : -1;
}

static void on_subscribe(struct mosquitto *m, void *context, int mid, int count, const int *granted)
{
        (void)m;
        (void)context;
        (void)mid;
        (void)count;
        (void)granted;
        subscribed = 1;
}

static void on_publish(struct mosquitto *m, void *context, int mid)
{
        (void)m;
        (void)context;
        (void)mid;
        __atomic_add_fetch(&published, 1, __ATOMIC_SEQ_CST);
}

static void on_message(struct mosquitto *m, void *context, const struct mosquitto_message *message)
{
        (void)m;
        (void)context;
        double now = now_us();
        if (recovering) {
                recover_arrived(message->payload, message->payloadlen);
        }
        note_arrival(now);
}

static void wait_for(volatile int *flag)
{
        double start = now_us();
        while (*flag == 0) {
                if (now_us() - start > 30e6) {
                        fprintf(stderr, "mosquitto_client: timed out\n");
                        exit(1);
                }
                sched_yield();
        }
        if (*flag < 0) {
                fprintf(stderr, "mosquitto_client: refused\n");
                exit(1);
        }
}

/* A connected client whose network loop runs on its own thread, or none (`threaded` 0) for
 * the connect mode, which runs the loop on the calling thread until CONNACK. */
static struct mosquitto *open_client(int n, int threaded)
{
        char id[64];
        snprintf(id, sizeof id, "bench-%d-%d", (int)getpid(), n);
        struct mosquitto *m = mosquitto_new(id, !recovering, NULL);
        if (m == NULL) {
                exit(1);
        }
        mosquitto_connect_callback_set(m, on_connect);
        mosquitto_subscribe_callback_set(m, on_subscribe);
        mosquitto_publish_callback_set(m, on_publish);
        mosquitto_message_callback_set(m, on_message);
        mosquitto_max_inflight_messages_set(m, 1000);
        mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
        if (recovering) {
                mosquitto_reconnect_delay_set(m, 0, 0, false);
        }
        connected = 0;
        if (mosquitto_connect(m, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "mosquitto_client: connect %d failed\n", n);
                exit(1);
        }
        if (threaded) {
                mosquitto_loop_start(m);
                wait_for(&connected);
        } else {
                /* mosquitto_loop() selects, which fails past descriptor 1023: read until
                 * CONNACK instead (the CONNECT went out in mosquitto_connect). */
                double start = now_us();
                while (connected == 0) {
                        if (now_us() - start > 30e6) {
                                fprintf(stderr, "mosquitto_client: no CONNACK\n");
                                exit(1);
                        }
                        int rc = mosquitto_loop_read(m, 1);
                        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && errno != EAGAIN) {
                                fprintf(stderr, "mosquitto_client: %s\n", mosquitto_strerror(rc));
                                exit(1);
                        }
                }
        }
        return m;
}

int main(int argc, char **argv)
{
        if (argc < 6) {
                fprintf(stderr, "usage: %s PORT QOS MODE COUNT SIZE\n", argv[0]);
                return 2;
        }
        port = atoi(argv[1]);
        qos = atoi(argv[2]);
        const char *mode = argv[3];
        int count = atoi(argv[4]);
        size = atoi(argv[5]);
        if (size < 16) {
                size = 16;
        }
        char *payload = calloc(1, size);
        char topic[64];
        snprintf(topic, sizeof topic, "bench/%d", (int)getpid());
        raise_fd_limit();
        mosquitto_lib_init();
        recovering = strcmp(mode, "recover") == 0;

        if (strcmp(mode, "connect") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        double start = now_us();
                        struct mosquitto *m = open_client(i, 0);
                        printf("%.1f\n", now_us() - start);
                        mosquitto_disconnect(m);
                        mosquitto_destroy(m);
                }
                return 0;
        }
        if (strcmp(mode, "idle") == 0) {
                /* Held without a loop: keep-alive is 60 s, longer than the measurement. */
                open_client(0, 0);
                say("one");
                stdin_line(-1);
                for (int i = 1; i < count; i++) {
                        open_client(i, 0);
                }
                say("ready");
                hold();
                _exit(0);
        }
        struct mosquitto *m = open_client(0, 1);
        if (strcmp(mode, "sub") == 0 || strcmp(mode, "pub") == 0) {
                strcpy(topic, "bench/tp");
        }
        if (strcmp(mode, "pub") != 0) {
                mosquitto_subscribe(m, NULL, topic, qos);
                wait_for(&subscribed);
        }
        if (strcmp(mode, "rtt") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        int before = arrived;
                        double start = now_us();
                        mosquitto_publish(m, NULL, topic, size, payload, qos, false);
                        if (await_round_trip(argv[0], before, start)) {
                                return 1;
                        }
                }
        } else if (strcmp(mode, "sub") == 0) {
                count_arrivals(count);
        } else if (strcmp(mode, "pub") == 0) {
                for (int i = 0; i < count; i++) {
                        if (mosquitto_publish(m, NULL, topic, size, payload, qos, false) != MOSQ_ERR_SUCCESS) {
                                return 1;
                        }
                }
                /* Until the last is acknowledged (QoS 1) or written (QoS 0). */
                while (published < count) {
                        sleep_us(200);
                }
        } else if (recovering) {
                say("ready");
                while (!stdin_line(2)) {
                        recover_number(payload, size);
                        /* Queued in the client while disconnected, sent on reconnect. */
                        if (mosquitto_publish(m, NULL, topic, size, payload, qos, false) == MOSQ_ERR_SUCCESS) {
                                recover_sent++;
                        }
                }
                sleep_us(3000000);
                recover_report();
        }
        fflush(stdout);
        _exit(0);
}
