/*
 * nats.c client for the benchmarks, against nats-server (core NATS: at most once, no
 * acknowledgements, the fastest mode).
 *
 *   nats_client URL MODE COUNT SIZE
 *
 * MODE as in peer_common.h. Round trips write each publish at once (send-as-soon-as-possible);
 * the other modes let the client batch its writes (its default). In the recovery mode the
 * client reconnects by itself (after 10 ms), buffering publishes meanwhile.
 */
#include "peer_common.h"
#include <nats/nats.h>

static const char *url;
static int size, recovering;

static void on_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
        (void)nc;
        (void)sub;
        (void)closure;
        double now = now_us();
        if (recovering) {
                recover_arrived(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
        }
        note_arrival(now);
        natsMsg_Destroy(msg);
}

static natsConnection *open_connection(int send_asap)
{
        natsOptions *options;
        natsConnection *nc = NULL;
        natsOptions_Create(&options);
        natsOptions_SetURL(options, url);
        natsOptions_SetSendAsap(options, send_asap);
        if (recovering) {
                natsOptions_SetMaxReconnect(options, -1);
                natsOptions_SetReconnectWait(options, 10);
                natsOptions_SetReconnectJitter(options, 0, 0);
                natsOptions_SetReconnectBufSize(options, 64 << 20);
        }
        natsStatus s = natsConnection_Connect(&nc, options);
        natsOptions_Destroy(options);
        if (s != NATS_OK) {
                fprintf(stderr, "nats_client: connect failed: %s\n", natsStatus_GetText(s));
                exit(1);
        }
        return nc;
}

int main(int argc, char **argv)
{
        if (argc < 5) {
                fprintf(stderr, "usage: %s URL MODE COUNT SIZE\n", argv[0]);
                return 2;
        }
        url = argv[1];
        const char *mode = argv[2];
        int count = atoi(argv[3]);
        size = atoi(argv[4]);
        if (size < 16) {
                size = 16;
        }
        char *payload = calloc(1, size);
        char subject[64];
        snprintf(subject, sizeof subject, "bench.%d", (int)getpid());
        raise_fd_limit();
        recovering = strcmp(mode, "recover") == 0;

        if (strcmp(mode, "connect") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        double start = now_us();
                        natsConnection *nc = open_connection(0);
                        printf("%.1f\n", now_us() - start);
                        natsConnection_Destroy(nc);
                }
                return 0;
        }
        if (strcmp(mode, "idle") == 0) {
                open_connection(0);
                say("one");
                stdin_line(-1);
                for (int i = 1; i < count; i++) {
                        open_connection(0);
                }
                say("ready");
                hold();
                _exit(0);
        }
        natsConnection *nc = open_connection(strcmp(mode, "rtt") == 0);
        natsSubscription *sub = NULL;
        if (strcmp(mode, "sub") == 0 || strcmp(mode, "pub") == 0) {
                strcpy(subject, "bench.tp");
        }
        if (strcmp(mode, "pub") != 0) {
                if (natsConnection_Subscribe(&sub, nc, subject, on_message, NULL) != NATS_OK) {
                        return 1;
                }
                /* No slow-consumer drops in the client: every message counts. */
                natsSubscription_SetPendingLimits(sub, -1, -1);
                natsConnection_Flush(nc);
        }
        if (strcmp(mode, "rtt") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        int before = arrived;
                        double start = now_us();
                        natsConnection_Publish(nc, subject, payload, size);
                        if (await_round_trip(argv[0], before, start)) {
                                return 1;
                        }
                }
        } else if (strcmp(mode, "sub") == 0) {
                count_arrivals(count);
        } else if (strcmp(mode, "pub") == 0) {
                for (int i = 0; i < count; i++) {
                        if (natsConnection_Publish(nc, subject, payload, size) != NATS_OK) {
                                return 1;
                        }
                }
                natsConnection_Flush(nc);
        } else if (recovering) {
                say("ready");
                while (!stdin_line(2)) {
                        recover_number(payload, size);
                        if (natsConnection_Publish(nc, subject, payload, size) == NATS_OK) {
                                recover_sent++;
                        }
                }
                sleep_us(3000000);
                recover_report();
        }
        fflush(stdout);
        _exit(0);
}
