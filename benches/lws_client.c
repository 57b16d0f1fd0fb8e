/*
 * libwebsockets client for the benchmarks: the library C users would pick instead, measured
 * against the same echo server as the raw tokio-tungstenite baseline.
 *
 *   lws_client PORT connect COUNT SIZE      COUNT times: connect, send SIZE bytes, get the echo
 *   lws_client PORT rtt COUNT SIZE          one connection, COUNT round trips
 *   lws_client PORT throughput COUNT SIZE   one connection, COUNT messages pipelined, all echoed
 *
 * Prints one number per line: microseconds per connect or round trip, or the total for
 * throughput.
 */
#define _POSIX_C_SOURCE 200809L
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int established, failed, to_send, received, size, pipelined;
static unsigned char *buffer;

static double now_us(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
        (void)user;
        (void)in;
        (void)len;
        switch (reason) {
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                established = 1;
                break;
        case LWS_CALLBACK_CLIENT_WRITEABLE:
                if (to_send > 0) {
                        lws_write(wsi, buffer + LWS_PRE, size, LWS_WRITE_BINARY);
                        to_send--;
                        if (pipelined && to_send > 0) {
                                lws_callback_on_writable(wsi);
                        }
                }
                break;
        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (lws_is_final_fragment(wsi)) {
                        received++;
                }
                break;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        case LWS_CALLBACK_CLIENT_CLOSED:
                failed = 1;
                break;
        default:
                break;
        }
        return 0;
}

static const struct lws_protocols protocols[] = {
        { "bench", callback, 0, 1 << 20, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static struct lws *open_connection(struct lws_context *context, int port)
{
        struct lws_client_connect_info info;
        memset(&info, 0, sizeof info);
        info.context = context;
        info.address = "127.0.0.1";
        info.port = port;
        info.path = "/";
        info.host = "127.0.0.1";
        info.origin = "127.0.0.1";
        info.protocol = NULL;
        info.local_protocol_name = "bench";
        established = failed = 0;
        struct lws *wsi = lws_client_connect_via_info(&info);
        while (wsi != NULL && !established && !failed) {
                lws_service(context, 0);
        }
        return failed ? NULL : wsi;
}

/* Sends `count` messages and services until `count` echoes are back. */
static int exchange(struct lws_context *context, struct lws *wsi, int count)
{
        int target = received + count;
        to_send = count;
        lws_callback_on_writable(wsi);
        while (received < target && !failed) {
                lws_service(context, 0);
        }
        return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
        if (argc < 5) {
                fprintf(stderr, "usage: %s PORT connect|rtt|throughput COUNT SIZE\n", argv[0]);
                return 2;
        }
        int port = atoi(argv[1]);
        const char *mode = argv[2];
        int count = atoi(argv[3]);
        size = atoi(argv[4]);
        buffer = calloc(1, LWS_PRE + size);
        lws_set_log_level(0, NULL);
        struct lws_context_creation_info info;
        memset(&info, 0, sizeof info);
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = protocols;
        info.options = 0;
        struct lws_context *context = lws_create_context(&info);
        if (context == NULL) {
                return 1;
        }
        if (strcmp(mode, "connect") == 0) {
                for (int i = 0; i < count; i++) {
                        double start = now_us();
                        struct lws *wsi = open_connection(context, port);
                        if (wsi == NULL || exchange(context, wsi, 1) != 0) {
                                return 1;
                        }
                        printf("%.1f\n", now_us() - start);
                        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
                }
        } else {
                struct lws *wsi = open_connection(context, port);
                if (wsi == NULL) {
                        return 1;
                }
                if (strcmp(mode, "rtt") == 0) {
                        for (int i = 0; i < count; i++) {
                                double start = now_us();
                                if (exchange(context, wsi, 1) != 0) {
                                        return 1;
                                }
                                printf("%.1f\n", now_us() - start);
                        }
                } else {
                        pipelined = 1;
                        double start = now_us();
                        if (exchange(context, wsi, count) != 0) {
                                return 1;
                        }
                        printf("%.1f\n", now_us() - start);
                }
        }
        lws_context_destroy(context);
        free(buffer);
        return 0;
}
