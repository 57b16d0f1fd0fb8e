/*
 * What the misuse and race suites share: a TCP relay on 127.0.0.1 that forwards every connection
 * to a server port and can cut all of them at once (so that sessions through it lose their
 * connection and reconnect), loopback URL helpers, and the answers their proxy challenge handlers
 * and certificate validation callbacks give. Header-only; one relay per program.
 */
#ifndef LIBSESSION_TEST_SUITE_H
#define LIBSESSION_TEST_SUITE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session.h"

// "demo:demo-proxy-pw", as the proxy fixture (proxy.sh) expects it.
#define PROXY_BASIC "Basic ZGVtbzpkZW1vLXByb3h5LXB3"

// A custom challenge handler's answer for the proxy fixture: Basic credentials before the first
// CONNECT, and giving up on any challenge.
static int answer_proxy_fixture(const DIFFUSION_PROXY_CHALLENGE_T *challenge, DIFFUSION_PROXY_RESPONSE_T *response)
{
        if (challenge->round > 0) {
                return HANDLER_FAILURE;
        }
        diffusion_proxy_response_add_header(response, "Proxy-Authorization", PROXY_BASIC);
        return HANDLER_SUCCESS;
}

// A certificate validation callback's answer that follows the library's own verdict.
static int library_verdict(ERROR_CODE_T verdict)
{
        return verdict == DIFF_ERR_SUCCESS ? DIFFUSION_CERTIFICATE_ACCEPT : DIFFUSION_CERTIFICATE_REJECT;
}

#define RELAY_MAX_PAIRS 64

struct relay_pair {
        int client, upstream;
        pthread_t thread;
        int used;
};

struct relay {
        int listener;
        int port;
        int upstream_port;
        pthread_t thread;
        pthread_mutex_t mutex;
        int refusing;                   // connections are accepted and closed at once
        struct relay_pair pairs[RELAY_MAX_PAIRS];
};

static int relay_connect_upstream(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr;
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_port = htons((unsigned short)port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
                close(fd);
                fd = -1;
        }
        return fd;
}

// Copies bytes both ways until either side ends or the relay cuts the pair.
static void *relay_pump(void *arg)
{
        struct relay_pair *pair = arg;
        char buffer[16384];
        struct pollfd fds[2] = { { pair->client, POLLIN, 0 }, { pair->upstream, POLLIN, 0 } };
        for (;;) {
                if (poll(fds, 2, -1) < 0) {
                        break;
                }
                int from = (fds[0].revents != 0) ? 0 : 1;
                if (fds[from].revents == 0) {
                        continue;
                }
                ssize_t n = read(fds[from].fd, buffer, sizeof buffer);
                if (n <= 0) {
                        break;
                }
                ssize_t sent = 0;
                while (sent < n) {
                        ssize_t w = send(fds[1 - from].fd, buffer + sent, (size_t)(n - sent), MSG_NOSIGNAL);
                        if (w <= 0) {
                                return NULL;
                        }
                        sent += w;
                }
        }
        shutdown(pair->client, SHUT_RDWR);
        shutdown(pair->upstream, SHUT_RDWR);
        return NULL;
}

static void *relay_accept(void *arg)
{
        struct relay *relay = arg;
        for (;;) {
                int client = accept(relay->listener, NULL, NULL);
                if (client < 0) {
                        return NULL;
                }
                pthread_mutex_lock(&relay->mutex);
                int upstream = relay->refusing ? -1 : relay_connect_upstream(relay->upstream_port);
                struct relay_pair *pair = NULL;
                for (int i = 0; i < RELAY_MAX_PAIRS && pair == NULL; i++) {
                        if (!relay->pairs[i].used) {
                                pair = &relay->pairs[i];
                        }
                }
                if (upstream < 0 || pair == NULL) {
                        pthread_mutex_unlock(&relay->mutex);
                        close(client);
                        if (upstream >= 0) {
                                close(upstream);
                        }
                        continue;
                }
                pair->client = client;
                pair->upstream = upstream;
                pair->used = 1;
                pthread_create(&pair->thread, NULL, relay_pump, pair);
                pthread_mutex_unlock(&relay->mutex);
        }
}

// Cuts every connection through the relay: both ends see the connection end. While `refuse`
// is set, new connections are closed as soon as they are accepted (clients that retry a request
// on a new connection, as HTTP polling does, lose their session too).
static void relay_cut(struct relay *relay, int refuse)
{
        pthread_mutex_lock(&relay->mutex);
        relay->refusing = refuse;
        for (int i = 0; i < RELAY_MAX_PAIRS; i++) {
                struct relay_pair *pair = &relay->pairs[i];
                if (pair->used) {
                        shutdown(pair->client, SHUT_RDWR);
                        shutdown(pair->upstream, SHUT_RDWR);
                        pthread_join(pair->thread, NULL);
                        close(pair->client);
                        close(pair->upstream);
                        pair->used = 0;
                }
        }
        pthread_mutex_unlock(&relay->mutex);
}

// Starts a relay to 127.0.0.1:upstream_port; 0 on success.
static int relay_start(struct relay *relay, int upstream_port)
{
        memset(relay, 0, sizeof *relay);
        pthread_mutex_init(&relay->mutex, NULL);
        relay->upstream_port = upstream_port;
        relay->listener = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (relay->listener < 0 || bind(relay->listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
            listen(relay->listener, 64) != 0 || getsockname(relay->listener, (struct sockaddr *)&addr, &len) != 0) {
                return -1;
        }
        relay->port = ntohs(addr.sin_port);
        return pthread_create(&relay->thread, NULL, relay_accept, relay);
}

// The port of a URL "scheme://host:port/..."; 0 if it has none.
static int url_port(const char *url)
{
        const char *host = strstr(url, "://");
        const char *colon = host ? strchr(host + 3, ':') : NULL;
        return colon ? atoi(colon + 1) : 0;
}

// Writes `url` with its host and port replaced by 127.0.0.1:`port` into `out`.
static void url_with_port(const char *url, int port, char *out, size_t size)
{
        const char *scheme_end = strstr(url, "://");
        int scheme_len = scheme_end ? (int)(scheme_end - url) : 0;
        snprintf(out, size, "%.*s://127.0.0.1:%d/diffusion", scheme_len, url, port);
}

// Starts a relay to the server of `url` and writes the URL that reaches it through the relay
// into `out`; 0 on success.
static int relay_start_for(struct relay *relay, const char *url, char *out, size_t size)
{
        if (relay_start(relay, url_port(url)) != 0) {
                return -1;
        }
        url_with_port(url, relay->port, out, size);
        return 0;
}

// A port on 127.0.0.1 that refuses connections: bound, then closed.
static int refused_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, (struct sockaddr *)&addr, sizeof addr);
        getsockname(fd, (struct sockaddr *)&addr, &len);
        close(fd);
        return ntohs(addr.sin_port);
}

// What both suites are given: URL [PROXY_PORT|-] [CA_FILE|-], and what they derive from it.
struct suite {
        const char *url;
        int proxy_port;          // 0: no proxy fixture
        const char *ca_file;     // NULL: no TLS fixture
        struct relay relay;
        char relay_url[128];     // `url` through the relay
        char bad_url[128];       // a port nobody listens on: connections are refused
};

// Reads the arguments and starts the relay; 0, or the exit status after saying what is wrong.
static int suite_start(struct suite *suite, int argc, char **argv)
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc < 2) {
                fprintf(stderr, "usage: %s URL [PROXY_PORT|-] [CA_FILE|-]\n", argv[0]);
                return 2;
        }
        suite->url = argv[1];
        suite->proxy_port = argc > 2 && strcmp(argv[2], "-") != 0 ? atoi(argv[2]) : 0;
        suite->ca_file = argc > 3 && strcmp(argv[3], "-") != 0 ? argv[3] : NULL;
        if (relay_start_for(&suite->relay, suite->url, suite->relay_url, sizeof suite->relay_url) != 0) {
                fprintf(stderr, "cannot start the relay\n");
                return 1;
        }
        url_with_port(suite->url, refused_port(), suite->bad_url, sizeof suite->bad_url);
        return 0;
}

static void relay_stop(struct relay *relay)
{
        shutdown(relay->listener, SHUT_RDWR);
        pthread_join(relay->thread, NULL);
        close(relay->listener);
        relay_cut(relay, 0);
        pthread_mutex_destroy(&relay->mutex);
}

#endif
