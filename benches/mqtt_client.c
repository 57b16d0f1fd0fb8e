/*
 * Eclipse Paho MQTT C client (asynchronous API, libpaho-mqtt3a: the synchronous one waits
 * 10-100 ms per connect and per QoS 1 publish by design) for the benchmarks, against mosquitto
 * over TCP (tcp://) or WebSocket (ws://).
 *
 *   mqtt_client URI QOS PROXY MODE COUNT SIZE
 *
 * PROXY is an HTTP proxy (http://host:port) for the connection, or "-". MODE as in
 * peer_common.h. In the recovery mode the session is persistent (clean session false) and the
 * client reconnects by itself (automatic reconnect; its shortest retry interval is 1 s).
 */
#include "peer_common.h"
#include <MQTTAsync.h>
#include <sched.h>

static const char *uri, *proxy;
static int qos, size, recovering;
static volatile int connected, failed, subscribed, sent, completed;

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *message)
{
        (void)context;
        (void)topic_len;
        double now = now_us();
        if (recovering) {
                recover_arrived(message->payload, message->payloadlen);
        }
        note_arrival(now);
        MQTTAsync_freeMessage(&message);
        MQTTAsync_free(topic);
        return 1;
}

static void on_connected(void *context, MQTTAsync_successData *data)
{
        (void)context;
        (void)data;
        __atomic_add_fetch(&connected, 1, __ATOMIC_SEQ_CST);
}

static void on_failed(void *context, MQTTAsync_failureData *data)
{
        (void)context;
        (void)data;
        failed = 1;
}

static void on_subscribed(void *context, MQTTAsync_successData *data)
{
        (void)context;
        (void)data;
        subscribed = 1;
}

static void on_sent(void *context, MQTTAsync_successData *data)
{
        (void)context;
        (void)data;
        __atomic_add_fetch(&completed, 1, __ATOMIC_SEQ_CST);
}

/* Waits until *flag reaches `target`. */
static void wait_for(volatile int *flag, int target)
{
        double start = now_us();
        while (*flag < target && !failed) {
                if (now_us() - start > 30e6) {
                        fprintf(stderr, "mqtt_client: timed out\n");
                        exit(1);
                }
                sched_yield();
        }
        if (failed) {
                fprintf(stderr, "mqtt_client: connect or subscribe failed\n");
                exit(1);
        }
}

/* Creates a client and connects it; with `wait`, returns once the broker has accepted it. */
static MQTTAsync open_client(int n, int wait)
{
        char id[64];
        snprintf(id, sizeof id, "bench-%d-%d", (int)getpid(), n);
        MQTTAsync client;
        MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
        create.sendWhileDisconnected = recovering;
        create.maxBufferedMessages = 100000;
        if (MQTTAsync_createWithOptions(&client, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &create) != MQTTASYNC_SUCCESS) {
                exit(1);
        }
        MQTTAsync_setCallbacks(client, NULL, NULL, on_message, NULL);
        MQTTAsync_connectOptions options = MQTTAsync_connectOptions_initializer;
        options.keepAliveInterval = 60;
        options.cleansession = !recovering;
        options.maxInflight = 1000;
        options.onSuccess = on_connected;
        options.onFailure = on_failed;
        if (recovering) {
                options.automaticReconnect = 1;
                options.minRetryInterval = 1;
                options.maxRetryInterval = 1;
        }
        if (strcmp(proxy, "-") != 0) {
                options.httpProxy = proxy;
        }
        int before = connected;
        if (MQTTAsync_connect(client, &options) != MQTTASYNC_SUCCESS) {
                exit(1);
        }
        if (wait) {
                wait_for(&connected, before + 1);
        }
        return client;
}

static void publish(MQTTAsync client, const char *topic, void *payload)
{
        MQTTAsync_responseOptions response = MQTTAsync_responseOptions_initializer;
        response.onSuccess = on_sent;
        MQTTAsync_message message = MQTTAsync_message_initializer;
        message.payload = payload;
        message.payloadlen = size;
        message.qos = qos;
        int rc;
        /* The in-flight window or the send buffer full: wait for the client to catch up. */
        while ((rc = MQTTAsync_sendMessage(client, topic, &message, &response)) == MQTTASYNC_MAX_MESSAGES_INFLIGHT
               || rc == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
                sleep_us(50);
        }
        if (rc != MQTTASYNC_SUCCESS) {
                if (recovering) {
                        return;
                }
                fprintf(stderr, "mqtt_client: publish failed: %d\n", rc);
                exit(1);
        }
        sent++;
}

int main(int argc, char **argv)
{
        if (argc < 7) {
                fprintf(stderr, "usage: %s URI QOS PROXY MODE COUNT SIZE\n", argv[0]);
                return 2;
        }
        uri = argv[1];
        qos = atoi(argv[2]);
        proxy = argv[3];
        const char *mode = argv[4];
        int count = atoi(argv[5]);
        size = atoi(argv[6]);
        if (size < 16) {
                size = 16;
        }
        char *payload = calloc(1, size);
        char topic[64];
        snprintf(topic, sizeof topic, "bench/%d", (int)getpid());
        raise_fd_limit();
        recovering = strcmp(mode, "recover") == 0;

        if (strcmp(mode, "connect") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        double start = now_us();
                        MQTTAsync client = open_client(i, 1);
                        printf("%.1f\n", now_us() - start);
                        MQTTAsync_disconnect(client, NULL);
                        MQTTAsync_destroy(&client);
                }
                return 0;
        }
        if (strcmp(mode, "idle") == 0) {
                /* Connects take 100 ms or more each (the client's threads sleep between
                 * polls): all at once. */
                open_client(0, 1);
                say("one");
                stdin_line(-1);
                for (int i = 1; i < count; i++) {
                        open_client(i, 0);
                }
                wait_for(&connected, count);
                say("ready");
                hold();
                _exit(0);
        }
        MQTTAsync client = open_client(0, 1);
        if (strcmp(mode, "sub") == 0 || strcmp(mode, "pub") == 0) {
                strcpy(topic, "bench/tp");
        }
        if (strcmp(mode, "pub") != 0) {
                MQTTAsync_responseOptions response = MQTTAsync_responseOptions_initializer;
                response.onSuccess = on_subscribed;
                response.onFailure = on_failed;
                MQTTAsync_subscribe(client, topic, qos, &response);
                wait_for(&subscribed, 1);
        }
        if (strcmp(mode, "rtt") == 0) {
                double begin = now_us();
                for (int i = 0; i < count && now_us() - begin < BUDGET_US; i++) {
                        int before = arrived;
                        double start = now_us();
                        publish(client, topic, payload);
                        if (await_round_trip(argv[0], before, start)) {
                                return 1;
                        }
                }
        } else if (strcmp(mode, "sub") == 0) {
                count_arrivals(count);
        } else if (strcmp(mode, "pub") == 0) {
                for (int i = 0; i < count; i++) {
                        publish(client, topic, payload);
                }
                /* Until the last is acknowledged (QoS 1) or written (QoS 0). */
                while (completed < sent) {
                        sleep_us(200);
                }
        } else if (recovering) {
                say("ready");
                while (!stdin_line(2)) {
                        recover_number(payload, size);
                        int before = sent;
                        publish(client, topic, payload);
                        if (sent != before) {
                                recover_sent++;
                        }
                }
                sleep_us(3000000);
                recover_report();
        }
        fflush(stdout);
        _exit(0);
}
