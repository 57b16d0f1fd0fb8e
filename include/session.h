/*
 * libsession: real-time client sessions with a C ABI.
 *
 * Generated from the Rust sources by cbindgen; do not edit. Regenerate with `make header`.
 *
 * Ownership: functions named *_create*, *_init or session_id_to_string return objects the caller
 * owns and releases with the matching *_free (strings with free()). Every function accepts NULL
 * pointers without crashing and says what it does with them. Error messages are allocated with
 * malloc and never contain credentials.
 *
 * Handles: SESSION_T is shared. The application's pointer is one reference; each callback the
 * library runs with the session holds another until it returns, so the pointer a callback is given
 * stays valid through the call even if another thread frees the session meanwhile. Every other
 * handle type has one owner: the caller, until its *_free.
 *
 * Threading: all sessions share a fixed pool of I/O threads (LIBSESSION_IO_THREADS, default 2).
 * Callbacks of one session run one at a time, in order, on one of those threads (a blocking
 * create runs the first ones on its calling thread; the reconnection function runs on a thread
 * where it may block). The callbacks of a session are: the state listener, on_connected /
 * on_error, message handlers (on_message, on_error) and their free_context, the session error
 * handler (session_set_error_handler), the reconnection functions, and the proxy
 * challenge handler and certificate validation callback while they serve that session's
 * connection. session_close and session_free wait for a callback of the session running on
 * another thread; after they return, none starts.
 *
 * Calls inside callbacks (any callback above):
 * - session_close: allowed; returns 1, the listener hears CLOSED_BY_CLIENT before it returns.
 * - session_free: allowed; the session pointer stays valid until the callback returns, and no
 *   other callback of the session starts. A create that is still running returns NULL: the
 *   error is DIFF_ERR_SESSION_CLOSED, or the failure that had closed the session.
 * - session_publish, session_subscribe, session_unsubscribe: allowed; 1, or 0 with the usual
 *   errors (DIFF_ERR_SESSION_CLOSED once the session is closed).
 * - session_create_async and its factory form: allowed.
 * - Blocking creates (session_create, session_create_with_user_context,
 *   session_create_with_session_factory): NULL with DIFF_ERR_ILLEGAL_STATE, as they would
 *   deadlock; allowed in the reconnection function and in a free_context that session_unsubscribe,
 *   session_close or session_free runs on the application's own thread.
 * What a blocking create returns agrees with what the listener saw: once the listener has seen
 * CONNECTED_ACTIVE the create returns the session, even if a callback has closed it since
 * (it returns NULL only when a callback freed it).
 */

#ifndef LIBSESSION_SESSION_H
#define LIBSESSION_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The version of libsession this header belongs to; libsession_version() gives the loaded one's. */
#define LIBSESSION_VERSION "0.2.0"
#define LIBSESSION_VERSION_MAJOR 0
#define LIBSESSION_VERSION_MINOR 2
#define LIBSESSION_VERSION_PATCH 0


/**
 * Default reconnection timeout, in milliseconds.
 */
#define DIFFUSION_DEFAULT_RECONNECT_TIMEOUT 60000

/**
 * Default delay between reconnection attempts, in milliseconds.
 */
#define DIFFUSION_DEFAULT_RECONNECT_DELAY 5000

/**
 * Default number of reconnection attempts.
 */
#define DIFFUSION_DEFAULT_RECONNECT_RETRY_COUNT 12

/**
 * Returned by a certificate validation callback to accept the connection.
 */
#define DIFFUSION_CERTIFICATE_ACCEPT 1

/**
 * Returned by a certificate validation callback to reject the connection.
 */
#define DIFFUSION_CERTIFICATE_REJECT 0

/**
 * Value a callback returns when it handled the event.
 */
#define HANDLER_SUCCESS 0

/**
 * Value a callback returns when it failed to handle the event.
 */
#define HANDLER_FAILURE -1

/**
 * Error codes. Numbers are stable and never reused; libsession's own codes start at 200.
 */
typedef enum {
  /**
   * No error.
   */
  DIFF_ERR_SUCCESS = 0,
  /**
   * An error not covered by another code.
   */
  DIFF_ERR_UNKNOWN = 1,
  /**
   * The session could not be created.
   */
  DIFF_ERR_SESSION_CREATE_FAILED = 3,
  /**
   * The transport could not be created.
   */
  DIFF_ERR_TRANSPORT_CREATE_FAILED = 4,
  /**
   * The server's host name did not resolve.
   */
  DIFF_ERR_ADDR_LOOKUP_FAIL = 10,
  /**
   * A socket could not be created.
   */
  DIFF_ERR_SOCKET_CREATE_FAIL = 11,
  /**
   * The TCP connection was refused or the host is unreachable.
   */
  DIFF_ERR_SOCKET_CONNECT_FAIL = 12,
  /**
   * The WebSocket upgrade request could not be sent.
   */
  DIFF_ERR_HANDSHAKE_SEND_FAIL = 13,
  /**
   * The WebSocket upgrade was refused or its response was not understood (the message has the
   * HTTP status).
   */
  DIFF_ERR_HANDSHAKE_RECV_FAIL = 14,
  /**
   * The peer does not speak the session protocol.
   */
  DIFF_ERR_INVALID_CONNECTION_PROTOCOL = 15,
  /**
   * The server rejected the connection.
   */
  DIFF_ERR_CONNECTION_REJECTED = 18,
  /**
   * The connection failed for an unspecified reason.
   */
  DIFF_ERR_CONNECTION_ERROR_UNDEFINED = 19,
  /**
   * The URL is malformed or breaks the URL rules; the message names the bad part.
   */
  DIFF_ERR_PARSE_URL = 22,
  /**
   * The URL's scheme is not a transport libsession provides.
   */
  DIFF_ERR_UNKNOWN_TRANSPORT = 23,
  /**
   * Reading from the connection failed.
   */
  DIFF_ERR_SOCKET_READ_FAIL = 24,
  /**
   * Writing to the connection failed.
   */
  DIFF_ERR_SOCKET_WRITE_FAIL = 25,
  /**
   * The requested kind of connection is not supported by this build.
   */
  DIFF_ERR_CONNECTION_UNSUPPORTED = 27,
  /**
   * Reconnection is not supported.
   */
  DIFF_ERR_RECONNECTION_UNSUPPORTED = 29,
  /**
   * The server broke the session protocol.
   */
  DIFF_ERR_CONNECTION_PROTOCOL_ERROR = 30,
  /**
   * The server refused the principal or credentials.
   */
  DIFF_ERR_AUTHENTICATION_FAILED = 31,
  /**
   * Client and server share no protocol version.
   */
  DIFF_ERR_PROTOCOL_VERSION = 32,
  /**
   * The server does not know the session.
   */
  DIFF_ERR_UNKNOWN_SESSION = 33,
  /**
   * Messages were lost.
   */
  DIFF_ERR_MESSAGE_LOSS = 34,
  /**
   * The call is not allowed now, or on this thread (a blocking call inside a callback).
   */
  DIFF_ERR_ILLEGAL_STATE = 36,
  /**
   * An argument is NULL, not UTF-8, or out of range.
   */
  DIFF_ERR_ILLEGAL_ARGUMENT = 48,
  /**
   * The connection to the server was lost.
   */
  DIFF_ERR_COMMUNICATION_ERROR = 100,
  /**
   * The session is closed.
   */
  DIFF_ERR_SESSION_CLOSED = 101,
  /**
   * The server did not answer within the connection timeout.
   */
  DIFF_ERR_REQUEST_TIME_OUT = 102,
  /**
   * Access was denied.
   */
  DIFF_ERR_ACCESS_DENIED = 103,
  /**
   * libsession: the proxy could not be reached (refused, unreachable, unresolved). Retried by
   * the initial retry strategy.
   */
  DIFF_ERR_PROXY_UNREACHABLE = 200,
  /**
   * libsession: the proxy refused the proxy credentials (407, or 401 from some proxies), asked
   * for credentials that were not configured, or kept challenging past the conversation bound.
   * The message names the proxy, its status line and the schemes it offered. Never retried.
   */
  DIFF_ERR_PROXY_AUTHENTICATION_FAILED = 201,
  /**
   * libsession: the proxy refused to open the tunnel (403 or another status, or a SOCKS5
   * refusal); the message has the proxy's status line or reply.
   */
  DIFF_ERR_PROXY_TUNNEL_REFUSED = 202,
  /**
   * libsession: the proxy's answer was malformed, larger than 64 KiB of headers, or cut short.
   */
  DIFF_ERR_PROXY_PROTOCOL_ERROR = 203,
  /**
   * libsession: the server's certificate does not chain to a trusted CA (unknown issuer, bad
   * signature). Trust its CA with diffusion_session_factory_certificate_authority.
   */
  DIFF_ERR_TLS_CERTIFICATE_UNTRUSTED = 210,
  /**
   * libsession: the server's certificate has expired or is not valid yet.
   */
  DIFF_ERR_TLS_CERTIFICATE_EXPIRED = 211,
  /**
   * libsession: the server's certificate is not valid for the host name (or the name given
   * with diffusion_session_factory_tls_server_name); the message lists the names it has.
   */
  DIFF_ERR_TLS_CERTIFICATE_NAME_MISMATCH = 212,
  /**
   * libsession: the TLS handshake failed, e.g. the peer sent an alert (named in the message).
   */
  DIFF_ERR_TLS_HANDSHAKE_FAILED = 213,
  /**
   * libsession: the peer answered the TLS handshake with plain text (a ws:// port, say).
   */
  DIFF_ERR_TLS_NOT_TLS = 214,
  /**
   * libsession: the certificate validation callback rejected the certificate.
   */
  DIFF_ERR_TLS_CERTIFICATE_REJECTED = 215,
  /**
   * libsession: maximum_queue_size messages are already waiting to be sent; nothing was
   * queued, nothing already queued is lost.
   */
  DIFF_ERR_QUEUE_FULL = 220,
  /**
   * libsession: the message exceeds the maximum message size (the client's, or the server's
   * once connected).
   */
  DIFF_ERR_MESSAGE_TOO_LARGE = 221,
} ERROR_CODE_T;

/**
 * Session states, with the vendor API's numbers. Closed states are terminal.
 */
typedef enum {
  /**
   * No session, or a state that cannot be determined.
   */
  SESSION_STATE_UNKNOWN = -1,
  /**
   * Establishing the connection.
   */
  CONNECTING = 0,
  /**
   * Deprecated; never reported.
   */
  CONNECTED_INITIALISING = 1,
  /**
   * Connected and usable.
   */
  CONNECTED_ACTIVE = 2,
  /**
   * Connection lost, recovering the session.
   */
  RECOVERING_RECONNECT = 3,
  /**
   * Deprecated; never reported.
   */
  RECOVERING_FAILOVER = 4,
  /**
   * Closed by the application (session_close).
   */
  CLOSED_BY_CLIENT = 5,
  /**
   * Closed by the server.
   */
  CLOSED_BY_SERVER = 6,
  /**
   * Closed by a failure; session_get_error says which.
   */
  CLOSED_FAILED = 7,
} SESSION_STATE_T;

/**
 * How a session reaches its server.
 */
typedef enum {
  /**
   * No connection yet.
   */
  TRANSPORT_TYPE_NONE = -1,
  /**
   * A WebSocket (ws://, wss://).
   */
  WEBSOCKET = 0,
  /**
   * HTTP long polling (xhr://, xhrs://, or by cascading).
   */
  HTTP_POLLING = 1,
} TRANSPORT_TYPE_T;

/**
 * Opaque credentials. Create with a `credentials_create_*` function, release with
 * `credentials_free`. Sessions copy what they need, so credentials may be freed once the session
 * has been created.
 */
typedef struct CREDENTIALS_T CREDENTIALS_T;

/**
 * Opaque error of the retry strategy constructors.
 */
typedef struct DIFFUSION_API_ERROR_T DIFFUSION_API_ERROR_T;

/**
 * How to authenticate to an HTTP proxy. Create with a `diffusion_proxy_authentication_*`
 * function, release with `diffusion_proxy_authentication_free`. Factories keep what they need,
 * so it may be freed once set.
 */
typedef struct DIFFUSION_PROXY_AUTHENTICATION_T DIFFUSION_PROXY_AUTHENTICATION_T;

/**
 * Collects the headers a custom handler wants on the next CONNECT.
 */
typedef struct DIFFUSION_PROXY_RESPONSE_T DIFFUSION_PROXY_RESPONSE_T;

/**
 * How session establishment is retried after transient failures. Create with a
 * `diffusion_retry_strategy_*` function, release with `diffusion_retry_strategy_free`. A factory
 * copies the strategy, so it may be freed once set.
 */
typedef struct DIFFUSION_RETRY_STRATEGY_T DIFFUSION_RETRY_STRATEGY_T;

/**
 * A session factory. Create with `diffusion_session_factory_init`, release with
 * `diffusion_session_factory_free`.
 */
typedef struct DIFFUSION_SESSION_FACTORY_T DIFFUSION_SESSION_FACTORY_T;

/**
 * A reconnection strategy. Create with `make_reconnection_strategy_*`, release with
 * `free_reconnection_strategy`; sessions and factories copy it (but not `args`).
 */
typedef struct RECONNECTION_STRATEGY_T RECONNECTION_STRATEGY_T;

/**
 * An open or closed session. Opaque: use the accessor functions.
 *
 * Shared: the application's pointer is one reference; every callback running with the session
 * holds another, so the session outlives `session_free` until the last of them has returned.
 */
typedef struct SESSION_T SESSION_T;

/**
 * An error report. `message` is allocated with malloc: release it with `free(message)` or
 * `diffusion_error_free(&error)`. `context` is always NULL.
 */
typedef struct diffusion_error_s {
  /**
   * What kind of failure.
   */
  ERROR_CODE_T code;
  /**
   * What failed, where and what to do; never contains credentials.
   */
  char *message;
  /**
   * Reserved; NULL.
   */
  void *context;
} DIFFUSION_ERROR_T;

/**
 * Receives every state change of a session. The struct is copied at creation; both members may
 * be NULL. Calls allowed inside: see "Calls inside callbacks" at the top of this header.
 */
typedef struct session_listener_s {
  /**
   * Called on every state change, in order, with the old and the new state. A session is
   * CONNECTING from its create call on, so the first call is from CONNECTING (to
   * CONNECTED_ACTIVE or a closed state), as the documented transitions say.
   */
  void (*on_state_changed)(SESSION_T *session, SESSION_STATE_T old_state, SESSION_STATE_T new_state);
  /**
   * Reserved for compatibility; never called.
   */
  void (*on_handler_error)();
} SESSION_LISTENER_T;

/**
 * Callbacks of an asynchronous create: exactly one of them runs, once (on_error inside
 * session_close or session_free when the session is closed before it connects). The struct is
 * copied. Calls allowed inside: see "Calls inside callbacks" at the top of this header.
 */
typedef struct session_create_callback_s {
  /**
   * The session is CONNECTED_ACTIVE. Return HANDLER_SUCCESS.
   */
  int (*on_connected)(SESSION_T *session);
  /**
   * The session could not be created (or was closed first). `error` and its message belong to
   * the library and are valid only during the call. Return HANDLER_SUCCESS.
   */
  int (*on_error)(SESSION_T *session, DIFFUSION_ERROR_T *error);
} SESSION_CREATE_CALLBACK_T;

/**
 * A log line's importance: one of the LIBSESSION_LOG_* values.
 */
typedef int LIBSESSION_LOG_LEVEL_T;

/**
 * Receives the library's log lines. `target` names the part of the library that logged (e.g.
 * "session::session::driver"), `message` is one line without a newline; both are valid during
 * the call only. See `libsession_set_log_callback` for the thread it runs on and what it may do.
 */
typedef void (*LIBSESSION_LOG_CB)(LIBSESSION_LOG_LEVEL_T level,
                                  const char *target,
                                  const char *message,
                                  void *context);

/**
 * Receives the messages of a subscription. The struct is copied. Zero-initialise it (`= { 0 }`
 * or designated initialisers) and set the members you use, so that code written before a member
 * was added (such as `on_error`) keeps working. Calls allowed inside `on_message`, `on_error`
 * and `free_context`: see "Calls inside callbacks" at the top of this header.
 */
typedef struct {
  /**
   * Called for every message on a path the subscription covers, in order, on a libsession I/O
   * thread (one callback of the session at a time). `path` and `data` are valid during the
   * call only. Return HANDLER_SUCCESS. Required.
   */
  int (*on_message)(SESSION_T *session,
                    const char *path,
                    const void *data,
                    size_t len,
                    void *context);
  /**
   * Passed to every call; never dereferenced by the library.
   */
  void *context;
  /**
   * Optional: called exactly once with `context` once the handler is no longer used: after
   * `session_unsubscribe`, a later `session_subscribe` of the same path, the session's close
   * or free, or at once when `session_subscribe` fails; always after the last call to
   * `on_message` has returned, and before session_free returns (when session_free is called
   * inside this handler's own `on_message`, right after that call returns). It runs on the
   * thread of the call that released the handler. After a refusal (`on_error`) it runs on the
   * libsession I/O thread right after `on_error` returns.
   */
  void (*free_context)(void *context);
  /**
   * Optional: called at most once, on a libsession I/O thread (one callback of the session at
   * a time), when the server refuses the subscription or later withdraws it because its
   * permissions changed: `error->code` is DIFF_ERR_ACCESS_DENIED and `error->message` names
   * the path. `path` is the subscription's path. `path` and `error` are valid during the call
   * only; the library frees the message. The subscription is then gone (`session_unsubscribe`
   * of it fails) and `free_context` runs after this returns. NULL: refusals are not reported
   * to the handler (`free_context` still runs).
   */
  void (*on_error)(SESSION_T *session,
                   const char *path,
                   const DIFFUSION_ERROR_T *error,
                   void *context);
} SESSION_MESSAGE_HANDLER_T;

/**
 * One HTTP header: NUL-terminated name and value.
 */
typedef struct {
  /**
   * Header name as the proxy sent it.
   */
  const char *name;
  /**
   * Header value, leading and trailing spaces removed.
   */
  const char *value;
} DIFFUSION_HTTP_HEADER_T;

/**
 * A proxy's challenge, as a custom handler sees it. Valid only during the call.
 */
typedef struct {
  /**
   * 0 before the first CONNECT (add headers to authenticate preemptively), then 1, 2, ... for
   * each challenge.
   */
  uint32_t round;
  /**
   * 407, or 401 from proxies that challenge with it; 0 in round 0.
   */
  int status_code;
  /**
   * The status line, e.g. "HTTP/1.1 407 Proxy Authentication Required"; "" in round 0.
   */
  const char *status_line;
  /**
   * Every response header, in order (Proxy-Authenticate among them).
   */
  const DIFFUSION_HTTP_HEADER_T *headers;
  /**
   * Number of entries in `headers`.
   */
  size_t header_count;
  /**
   * Whether the proxy kept the connection open: the next CONNECT goes on the same connection.
   * Connection-bound schemes (NTLM, Negotiate) must restart when it is false.
   */
  bool connection_kept_alive;
} DIFFUSION_PROXY_CHALLENGE_T;

/**
 * A custom proxy authentication scheme. The struct is copied.
 */
typedef struct {
  /**
   * Called for round 0 and for every challenge, on a libsession I/O thread (on the calling
   * thread while a blocking create connects); never for two rounds at once. A callback of the
   * session it serves: see "Calls inside callbacks" at the top of this header. Add headers with `diffusion_proxy_response_add_header` and return
   * HANDLER_SUCCESS to send another CONNECT, or return HANDLER_FAILURE to give up (the session
   * fails with DIFF_ERR_PROXY_AUTHENTICATION_FAILED). Required.
   */
  int (*on_challenge)(const DIFFUSION_PROXY_CHALLENGE_T *challenge,
                      DIFFUSION_PROXY_RESPONSE_T *response,
                      void *context);
  /**
   * Most challenges answered before authentication fails; 0 means the default, 3.
   */
  uint32_t maximum_conversations;
  /**
   * Passed to every call; never dereferenced by the library.
   */
  void *context;
  /**
   * Optional: called exactly once with `context`, after the last call, when the
   * authentication object and every factory and session using it are gone.
   */
  void (*free_context)(void *context);
} DIFFUSION_PROXY_CHALLENGE_HANDLER_T;

/**
 * What a user reconnection function returns.
 */
typedef int RECONNECTION_ATTEMPT_ACTION_T;

/**
 * Called before each reconnection attempt, on a thread where it may block (sleeping here
 * delays the attempt; session_close and session_free wait for it to return, so keep it short).
 * Return RECONNECTION_ATTEMPT_ACTION_START or _ABORT. Blocking creates are allowed inside; other
 * calls: see "Calls inside callbacks" at the top of this header.
 */
typedef RECONNECTION_ATTEMPT_ACTION_T (*PERFORM_RECONNECTION_CB)(SESSION_T *session, void *args);

/**
 * Called after a successful reconnection, or when reconnection is given up, on a libsession
 * I/O thread.
 */
typedef void (*PERFORM_RECONNECTION_AFTER_ACTION_CB)(SESSION_T *session, void *args);

/**
 * Handle to an API error: read with `get_diffusion_api_error_code` and
 * `get_diffusion_api_error_description`, release with `diffusion_api_error_free`.
 */
typedef DIFFUSION_API_ERROR_T *DIFFUSION_API_ERROR;

/**
 * A session's identity: the server instance that holds it and its number there.
 */
typedef struct {
  /**
   * The server instance holding the session.
   */
  uint64_t server_instance;
  /**
   * The session's number within that instance.
   */
  uint64_t value;
} SESSION_ID_T;

/**
 * One certificate, DER-encoded. Valid only during the callback.
 */
typedef struct {
  /**
   * The DER bytes.
   */
  const uint8_t *der;
  /**
   * Their number.
   */
  size_t length;
} DIFFUSION_CERTIFICATE_T;

/**
 * A certificate validation callback, like .NET's CertificateValidation. The struct is copied.
 */
typedef struct {
  /**
   * Decides on every TLS connection, on a libsession I/O thread (on the calling thread while a
   * blocking create connects), as a callback of the session it serves (see "Calls inside
   * callbacks" at the top of this header): `host` is the name verified,
   * `chain[0]` the server's certificate followed by the intermediates it sent, `verdict` the
   * library's own verdict (DIFF_ERR_SUCCESS, or a DIFF_ERR_TLS_* code with `reason`, "" on
   * success). Return DIFFUSION_CERTIFICATE_ACCEPT or DIFFUSION_CERTIFICATE_REJECT (rejection
   * fails the session with DIFF_ERR_TLS_CERTIFICATE_REJECTED). Required.
   */
  int (*validate)(const char *host,
                  const DIFFUSION_CERTIFICATE_T *chain,
                  size_t chain_length,
                  ERROR_CODE_T verdict,
                  const char *reason,
                  void *context);
  /**
   * Passed to every call; never dereferenced by the library.
   */
  void *context;
  /**
   * Optional: called exactly once with `context` when no factory or session uses the callback
   * any more.
   */
  void (*free_context)(void *context);
} DIFFUSION_CERTIFICATE_VALIDATION_T;

/**
 * A failure the application should know about.
 */
#define LIBSESSION_LOG_ERROR 1

/**
 * Something unexpected that the library handled (a refused reconnection, a dropped frame).
 */
#define LIBSESSION_LOG_WARN 2

/**
 * A session's life: connected, recovered, closed.
 */
#define LIBSESSION_LOG_INFO 3

/**
 * Each connection attempt and what the proxies and the server answered.
 */
#define LIBSESSION_LOG_DEBUG 4

/**
 * Everything, down to frames and acknowledgements; never credentials.
 */
#define LIBSESSION_LOG_TRACE 5

/**
 * Attempt to reconnect now.
 */
#define RECONNECTION_ATTEMPT_ACTION_START 0

/**
 * Give up: the session closes with CLOSED_FAILED.
 */
#define RECONNECTION_ATTEMPT_ACTION_ABORT 1

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Creates empty credentials (anonymous or principal-only sessions).
 *
 * Returns a new object owned by the caller, to release with `credentials_free`.
 */
CREDENTIALS_T *credentials_create_none(void);

/**
 * Creates password credentials from a NUL-terminated string (copied).
 *
 * Returns NULL when `password` is NULL. The result is owned by the caller (`credentials_free`).
 */
CREDENTIALS_T *credentials_create_password(const char *password);

/**
 * Creates custom credentials from `len` bytes at `data` (copied; may contain NULs).
 *
 * Returns NULL when `data` is NULL and `len` is not 0. The result is owned by the caller
 * (`credentials_free`).
 */
CREDENTIALS_T *credentials_create_custom(const char *data, unsigned long len);

/**
 * Frees credentials. NULL does nothing. The secret is overwritten before the memory is released.
 */
void credentials_free(CREDENTIALS_T *credentials);

/**
 * Frees the message of `error` and sets it to NULL; the struct itself belongs to the caller.
 *
 * NULL `error` or NULL `error->message` does nothing, so calling it twice is safe.
 * Thread-safe for distinct errors.
 */
void diffusion_error_free(DIFFUSION_ERROR_T *error);

/**
 * Creates a factory with the default settings. Owned by the caller
 * (`diffusion_session_factory_free`).
 */
DIFFUSION_SESSION_FACTORY_T *diffusion_session_factory_init(void);

/**
 * Frees a factory. Sessions created from it are not affected. NULL does nothing.
 */
void diffusion_session_factory_free(DIFFUSION_SESSION_FACTORY_T *factory);

/**
 * Sets the listener of sessions created from now on (the struct is copied); NULL removes it.
 * NULL factory: no-op.
 */
void diffusion_session_factory_session_listener(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                SESSION_LISTENER_T *listener);

/**
 * Sets the user context of sessions created from now on (never dereferenced). NULL factory: no-op.
 */
void diffusion_session_factory_user_context(const DIFFUSION_SESSION_FACTORY_T *factory,
                                            void *user_context);

/**
 * Sets the principal (copied); NULL means anonymous. Invalid UTF-8: no-op. NULL factory: no-op.
 */
void diffusion_session_factory_principal(const DIFFUSION_SESSION_FACTORY_T *factory,
                                         const char *principal);

/**
 * Sets credentials to none (the default). NULL factory: no-op.
 */
void diffusion_session_factory_no_credentials(const DIFFUSION_SESSION_FACTORY_T *factory);

/**
 * Sets the credentials (copied). NULL credentials or factory: no-op.
 */
void diffusion_session_factory_credentials(const DIFFUSION_SESSION_FACTORY_T *factory,
                                           const CREDENTIALS_T *credentials);

/**
 * Sets password credentials (copied). NULL password or factory: no-op.
 */
void diffusion_session_factory_password(const DIFFUSION_SESSION_FACTORY_T *factory,
                                        const char *password);

/**
 * Sets custom credentials: `len` bytes at `data` (copied). NULL `data` with a non-zero `len`,
 * or NULL factory: no-op.
 */
void diffusion_session_factory_custom_credentials(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                  const char *data,
                                                  unsigned long len);

/**
 * Bounds each connection attempt (TCP connect, upgrade, handshake), in milliseconds; default
 * 2000. 0: no-op. Values over one hour are capped at one hour. NULL factory: no-op.
 */
void diffusion_session_factory_connection_timeout(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                  uint32_t connection_timeout);

/**
 * Bounds each write, in milliseconds; default 2000. 0: no-op. Capped at one hour. NULL factory:
 * no-op.
 */
void diffusion_session_factory_write_timeout(const DIFFUSION_SESSION_FACTORY_T *factory,
                                             uint32_t write_timeout);

/**
 * Sets how session establishment is retried (copied; the strategy may be freed afterwards).
 * NULL restores the default, no retry. NULL factory: no-op.
 */
void diffusion_session_factory_initial_retry_strategy(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                      DIFFUSION_RETRY_STRATEGY_T *strategy);

/**
 * Sets the reconnection strategy of sessions created from now on (copied, not its `args`);
 * NULL restores the default (every 5 s for up to 60 s). NULL factory: no-op.
 */
void diffusion_session_factory_reconnection_strategy(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                     RECONNECTION_STRATEGY_T *reconnection_strategy);

/**
 * Disables reconnection (same as a reconnection timeout of 0). NULL factory: no-op.
 */
void diffusion_session_factory_no_reconnection(const DIFFUSION_SESSION_FACTORY_T *factory);

/**
 * Sets how long a session tries to reconnect, in milliseconds (default 60000); 0 or less
 * disables reconnection. NULL factory: no-op.
 */
void diffusion_session_factory_reconnection_timeout(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                    int reconnection_timeout);

/**
 * Sets the largest message accepted from the server, in bytes, announced to the server in the
 * handshake (default 1 MiB, where the vendor's API has INT_MAX); a larger one fails the session
 * with DIFF_ERR_CONNECTION_PROTOCOL_ERROR, and HTTP polling answers are bounded by it. It also
 * bounds what the session publishes (DIFF_ERR_MESSAGE_TOO_LARGE). Below 1024: no-op. NULL
 * factory: no-op.
 */
void diffusion_session_factory_maximum_message_size(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                    uint32_t maximum_message_size);

/**
 * Sets the socket receive buffer size in bytes, fixed for each connection. By default the
 * kernel sizes the buffer and grows it with the traffic (on Linux a receive buffer starts at
 * 131072 bytes). Below 1024: no-op. NULL factory: no-op.
 */
void diffusion_session_factory_input_buffer_size(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                 uint32_t input_buffer_size);

/**
 * Sets the socket send buffer size in bytes, fixed for each connection. By default the kernel
 * sizes the buffer and grows it with the traffic. Below 1024: no-op. NULL factory: no-op.
 */
void diffusion_session_factory_output_buffer_size(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                  uint32_t output_buffer_size);

/**
 * Sets how many messages may wait to be sent (default 1000). 0: no-op. NULL factory: no-op.
 */
void diffusion_session_factory_maximum_queue_size(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                  uint32_t maximum_queue_size);

/**
 * Sets how many sent messages are kept for recovery (default 128; 0 allowed). NULL factory:
 * no-op.
 */
void diffusion_session_factory_recovery_buffer_size(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                    uint32_t recovery_buffer_size);

/**
 * Sets the server host used when a session is created without a URL (copied); NULL unsets it.
 * NULL factory: no-op.
 */
void diffusion_session_factory_server_host(const DIFFUSION_SESSION_FACTORY_T *factory,
                                           const char *server_host);

/**
 * Sets the server port used when a session is created without a URL. Outside 1..65535: no-op.
 * NULL factory: no-op.
 */
void diffusion_session_factory_server_port(const DIFFUSION_SESSION_FACTORY_T *factory,
                                           int server_port);

/**
 * Chooses wss (true) or ws (false) when a session is created without a URL. NULL factory: no-op.
 */
void diffusion_session_factory_secure_transport(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                bool secure_transport);

/**
 * Sets the request path used when a session is created without a URL (copied; default
 * "/diffusion"); NULL restores the default. A path that does not begin with '/' and end with
 * '/diffusion' makes those creations fail with DIFF_ERR_PARSE_URL naming it. NULL factory: no-op.
 */
void diffusion_session_factory_request_path(const DIFFUSION_SESSION_FACTORY_T *factory,
                                            const char *request_path);

/**
 * Sets session property `key` to `value` (both copied), replacing an earlier value; a NULL
 * `value` removes the key. NULL `key` or factory: no-op.
 */
void diffusion_session_factory_property(const DIFFUSION_SESSION_FACTORY_T *factory,
                                        const char *key,
                                        const char *value);

/**
 * Adds a header to the WebSocket upgrade of every session created from the factory (both
 * strings copied), e.g. for a balancer that routes on a header or an affinity token.
 *
 * Returns 1, or 0 when the header is refused: NULL or non-UTF-8 arguments, an invalid name, CR,
 * LF or NUL anywhere (header injection), or a header the library sets itself (Host, Upgrade,
 * Connection, Sec-WebSocket-*, X-Session-Connect, Cookie, Proxy-*, Content-Length,
 * Transfer-Encoding, TE). A refused header also makes sessions created from the factory fail
 * with DIFF_ERR_ILLEGAL_ARGUMENT naming it, so that none goes out without it. NULL factory: 0.
 */
int diffusion_session_factory_http_header(const DIFFUSION_SESSION_FACTORY_T *factory,
                                          const char *name,
                                          const char *value);

/**
 * Opens a session with the factory's settings and blocks until it is CONNECTED_ACTIVE or has
 * failed (after the factory's initial retry strategy is exhausted).
 *
 * `url_str` wins over the factory's host, port, secure transport and request path; NULL builds
 * the URL from them (and fails if no host is set). Returns the session, owned by the caller, or
 * NULL on failure: `session_last_error` then tells why. Called inside a libsession callback it
 * fails with DIFF_ERR_ILLEGAL_STATE.
 */
SESSION_T *session_create_with_session_factory(const DIFFUSION_SESSION_FACTORY_T *factory,
                                               const char *url_str);

/**
 * Starts opening a session with the factory's settings and returns at once; exactly one of
 * `callbacks->on_connected` / `on_error` runs later (`callbacks` is required and copied).
 *
 * Returns the handle, owned by the caller, or NULL when the arguments are invalid (no callback
 * runs then; `session_last_error` tells why).
 */
SESSION_T *session_create_async_with_session_factory(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                     SESSION_CREATE_CALLBACK_T *callbacks,
                                                     const char *url_str);

/**
 * This build's version, "MAJOR.MINOR.PATCH", as LIBSESSION_VERSION_MAJOR, _MINOR and _PATCH
 * in this header say for the version compiled against. A static string: never NULL, never to
 * be freed. Thread-safe.
 */
const char *libsession_version(void);

/**
 * Routes the library's log to `callback`: lines at `level` and more important ones
 * (LIBSESSION_LOG_ERROR is the most important; a level above LIBSESSION_LOG_TRACE means
 * LIBSESSION_LOG_TRACE, one below LIBSESSION_LOG_ERROR delivers nothing). A NULL `callback`
 * restores the default: standard error when the LIBSESSION_LOG environment variable is set,
 * nothing otherwise. While a callback is set, nothing goes to standard error.
 *
 * Callable at any time from any thread. Once it returns, the previous callback is not running
 * and is never called again, so its `context` may be freed: it waits for calls of the previous
 * callback in progress, so do not call it while holding a lock that callback takes. Called
 * from inside the callback it does nothing.
 *
 * The callback runs on the thread that logs (the application's thread inside a libsession
 * call, or an I/O thread), on several threads at once at times: it must be thread-safe, and
 * return soon (it delays the thread that logs). It must not call libsession functions other
 * than libsession_version and session_state_as_string, as it may run while the library holds
 * a session's locks; what libsession logs during the callback is dropped. `context` is passed
 * to every call and never dereferenced. Credentials (passwords, tokens, proxy credentials)
 * never appear in log lines at any level.
 */
void libsession_set_log_callback(LIBSESSION_LOG_LEVEL_T level,
                                 LIBSESSION_LOG_CB callback,
                                 void *context);

/**
 * Subscribes the session to `path`, or to everything below it when `path` ends with '/'.
 * `handler` receives the messages; it replaces an earlier handler of the same path. The
 * subscription survives reconnection. Allowed while connecting or recovering (it is sent once
 * connected).
 *
 * Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL or invalid argument),
 * DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL.
 */
int session_subscribe(SESSION_T *session,
                      const char *path,
                      const SESSION_MESSAGE_HANDLER_T *handler,
                      DIFFUSION_ERROR_T *error);

/**
 * Ends the session's subscription to `path` (exactly as subscribed); its handler's
 * `free_context` runs once no call to it is running.
 *
 * Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL, or no such
 * subscription), DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL.
 */
int session_unsubscribe(SESSION_T *session, const char *path, DIFFUSION_ERROR_T *error);

/**
 * Publishes `len` bytes at `data` (copied) on `path`: the server delivers them to every
 * session subscribed to the path, this one too if subscribed. Messages published while
 * connecting or recovering are queued and sent, in order, once connected; none is lost or
 * duplicated by a reconnection. Thread: any. On an application thread, while the session's
 * I/O thread has nothing to send over a WebSocket, the message is written from the calling
 * thread without waiting (what the socket does not take at once is finished by the I/O thread).
 *
 * Returns 1, or 0 with `*error` filled: DIFF_ERR_ILLEGAL_ARGUMENT (NULL session or path, NULL
 * data with a non-zero len, invalid path), DIFF_ERR_SESSION_CLOSED, DIFF_ERR_QUEUE_FULL
 * (maximum_queue_size messages are waiting; nothing queued is lost), DIFF_ERR_MESSAGE_TOO_LARGE.
 */
int session_publish(SESSION_T *session,
                    const char *path,
                    const void *data,
                    size_t len,
                    DIFFUSION_ERROR_T *error);

/**
 * Sets the function told of the session's publications that the server refused (its
 * permissions do not allow publishing on the path): `on_error` is called with the path, an
 * error whose code is DIFF_ERR_ACCESS_DENIED and whose message names the path, and `context`,
 * on a libsession I/O thread, in order with the session's other callbacks. `path` and `error`
 * are valid during the call only; the library frees the message. It replaces an earlier
 * function; NULL `on_error` removes it. Refused subscriptions go to their handler's `on_error`
 * instead.
 *
 * `context` stays the caller's: the library never dereferences or frees it, and passes it until
 * the function is replaced or removed or the session is freed. Thread: any; allowed inside
 * callbacks.
 *
 * Returns 1, or 0 when `session` is NULL.
 */
int session_set_error_handler(SESSION_T *session, void (*on_error)(SESSION_T *session,
                                                                   const char *path,
                                                                   const DIFFUSION_ERROR_T *error,
                                                                   void *context), void *context);

/**
 * Basic authentication, sent with the first CONNECT (to the proxy only, never to the server).
 *
 * Returns a new object owned by the caller, or NULL when `user` is NULL or either string is not
 * UTF-8 (a NULL password is empty).
 */
DIFFUSION_PROXY_AUTHENTICATION_T *diffusion_proxy_authentication_basic(const char *user,
                                                                       const char *password);

/**
 * Digest authentication (RFC 7616: MD5 or SHA-256, qop=auth), in answer to the proxy's
 * challenge. Arguments and result as for `diffusion_proxy_authentication_basic`.
 */
DIFFUSION_PROXY_AUTHENTICATION_T *diffusion_proxy_authentication_digest(const char *user,
                                                                        const char *password);

/**
 * Answers whichever of Basic or Digest the proxy asks for, preferring Digest. Arguments and
 * result as for `diffusion_proxy_authentication_basic`.
 */
DIFFUSION_PROXY_AUTHENTICATION_T *diffusion_proxy_authentication_any(const char *user,
                                                                     const char *password);

/**
 * Authentication by a custom handler (for schemes such as NTLM or Negotiate). `handler` is
 * copied; its context is released through `free_context` exactly once, after the last call.
 *
 * Returns a new object owned by the caller, or NULL when `handler` or `handler->on_challenge`
 * is NULL (then `free_context` is not called).
 */
DIFFUSION_PROXY_AUTHENTICATION_T *diffusion_proxy_authentication_custom(const DIFFUSION_PROXY_CHALLENGE_HANDLER_T *handler);

/**
 * Frees an authentication object. Factories that were given it keep their own reference.
 * NULL does nothing.
 */
void diffusion_proxy_authentication_free(DIFFUSION_PROXY_AUTHENTICATION_T *auth);

/**
 * Adds a header to the next CONNECT, from inside `on_challenge`. Both strings are copied.
 *
 * Returns 1, or 0 (header not added) when an argument is NULL or not UTF-8, the name is not a
 * valid header name, or either contains CR or LF.
 */
int diffusion_proxy_response_add_header(DIFFUSION_PROXY_RESPONSE_T *response,
                                        const char *name,
                                        const char *value);

/**
 * Sends sessions through the HTTP proxy `host`:`port` with CONNECT; `auth` (copied) may be NULL.
 *
 * A NULL or non-UTF-8 host or a port outside 1..65535 makes sessions created from the factory
 * fail with DIFF_ERR_ILLEGAL_ARGUMENT instead of connecting without the proxy. NULL factory:
 * no-op.
 */
void diffusion_session_factory_http_proxy(const DIFFUSION_SESSION_FACTORY_T *factory,
                                          const char *host,
                                          int port,
                                          const DIFFUSION_PROXY_AUTHENTICATION_T *auth);

/**
 * Sends sessions through the SOCKS5 proxy `host`:`port`, which resolves the server's name
 * (as socks5h://). `user` may be NULL for no authentication; otherwise user and password
 * (1 to 255 bytes) are sent with RFC 1929. Invalid arguments as for
 * `diffusion_session_factory_http_proxy`.
 */
void diffusion_session_factory_socks5_proxy(const DIFFUSION_SESSION_FACTORY_T *factory,
                                            const char *host,
                                            int port,
                                            const char *user,
                                            const char *password);

/**
 * Sets the proxy from a URL: `http://[user:password@]host[:port]`, `https://...` (TLS to the
 * proxy itself, verified like servers are), `socks5://...` (the client
 * resolves the server's name) or `socks5h://...` (the proxy does). User information is
 * percent-decoded (`%40` for `@`, `%3A` for `:`); HTTP proxy credentials answer Basic or Digest.
 * No port means 1080. An invalid URL makes sessions created from the factory fail with
 * DIFF_ERR_PARSE_URL. NULL factory: no-op.
 */
void diffusion_session_factory_proxy_url(const DIFFUSION_SESSION_FACTORY_T *factory,
                                         const char *url);

/**
 * Connects directly, ignoring any proxy the environment names. NULL factory: no-op.
 */
void diffusion_session_factory_no_proxy(const DIFFUSION_SESSION_FACTORY_T *factory);

/**
 * Reconnects up to `retry_count` times, `retry_delay` milliseconds apart (the first attempt is
 * immediate), within the reconnection timeout (default 60000 ms). A `retry_count` of 0 means
 * no attempts: a lost connection closes the session.
 *
 * Returns a new strategy owned by the caller, or NULL when either value is negative.
 */
RECONNECTION_STRATEGY_T *make_reconnection_strategy_repeating_attempt(long retry_count,
                                                                      long retry_delay);

/**
 * Lets the application decide: `reconnect_cb(session, args)` runs before each attempt (on a
 * thread where it may sleep to delay the attempt; attempts are at least 50 ms apart) and returns
 * START or ABORT; `success_cb` runs after a reconnection, `failure_cb` when reconnection is given
 * up (ABORT, or the timeout). `args` is passed as is and never freed by the library.
 *
 * Returns a new strategy owned by the caller, or NULL when `reconnect_cb` is NULL.
 */
RECONNECTION_STRATEGY_T *make_reconnection_strategy_user_function(PERFORM_RECONNECTION_CB reconnect_cb,
                                                                  void *args,
                                                                  PERFORM_RECONNECTION_AFTER_ACTION_CB success_cb,
                                                                  PERFORM_RECONNECTION_AFTER_ACTION_CB failure_cb);

/**
 * Sets how long reconnection is tried after a loss, in milliseconds; 0 or less disables
 * reconnection. NULL strategy: no-op.
 */
void reconnection_strategy_set_timeout(RECONNECTION_STRATEGY_T *strategy, long timeout_ms);

/**
 * Frees a strategy. Sessions and factories that were given it keep their copies. NULL does
 * nothing.
 */
void free_reconnection_strategy(RECONNECTION_STRATEGY_T *strategy);

/**
 * Retries `attempts` times, `interval` milliseconds apart (also the wait before the first retry).
 *
 * Returns a new strategy owned by the caller, or NULL when `interval` or `attempts` is 0; then
 * `*api_error` (when `api_error` is not NULL) receives an error to release with
 * `diffusion_api_error_free`, and is set to NULL on success.
 */
DIFFUSION_RETRY_STRATEGY_T *diffusion_retry_strategy_create(uint32_t interval,
                                                            uint32_t attempts,
                                                            DIFFUSION_API_ERROR *api_error);

/**
 * Retries every `interval` milliseconds until the session is closed.
 *
 * Returns a new strategy owned by the caller, or NULL when `interval` is 0 (see
 * `diffusion_retry_strategy_create` for `api_error`).
 */
DIFFUSION_RETRY_STRATEGY_T *diffusion_retry_strategy_create_interval_only(uint32_t interval,
                                                                          DIFFUSION_API_ERROR *api_error);

/**
 * Exponential backoff with full jitter: retry n waits a random time between 0 and
 * `min(max_ms, initial_ms * 2^(n-1))`, so clients do not retry in step after an outage.
 *
 * Returns a new strategy owned by the caller, or NULL when `initial_ms` or `attempts` is 0 or
 * `max_ms < initial_ms` (see `diffusion_retry_strategy_create` for `api_error`).
 */
DIFFUSION_RETRY_STRATEGY_T *diffusion_retry_strategy_create_backoff(uint32_t initial_ms,
                                                                    uint32_t max_ms,
                                                                    uint32_t attempts,
                                                                    DIFFUSION_API_ERROR *api_error);

/**
 * A strategy that never retries (the default). Owned by the caller.
 */
DIFFUSION_RETRY_STRATEGY_T *diffusion_retry_strategy_no_retry(void);

/**
 * The interval in milliseconds (the initial delay for backoff); 0 for no retry or NULL.
 */
uint32_t diffusion_retry_strategy_get_interval(DIFFUSION_RETRY_STRATEGY_T *strategy);

/**
 * The number of retries; 0 for no retry or NULL, UINT32_MAX for retrying until closed.
 */
uint32_t diffusion_retry_strategy_get_attempts(DIFFUSION_RETRY_STRATEGY_T *strategy);

/**
 * Frees a strategy. NULL does nothing.
 */
void diffusion_retry_strategy_free(DIFFUSION_RETRY_STRATEGY_T *strategy);

/**
 * The error's code (an ERROR_CODE_T value); 0 for NULL.
 */
int get_diffusion_api_error_code(DIFFUSION_API_ERROR error);

/**
 * The error's description, valid until `diffusion_api_error_free`; NULL for NULL.
 */
const char *get_diffusion_api_error_description(DIFFUSION_API_ERROR error);

/**
 * Frees an API error. NULL does nothing.
 */
void diffusion_api_error_free(DIFFUSION_API_ERROR error);

/**
 * Opens a session and blocks until it is CONNECTED_ACTIVE or has failed.
 *
 * - `url_str`: `ws://host[:port][/path]`; required.
 * - `principal`: NULL or "" for anonymous. `credentials`: NULL for none; copied.
 * - `listener`: NULL or a listener, copied. The connection is opened on the calling thread, so
 *   the listener hears the outcome there; later calls run on a libsession I/O thread.
 * - `reconnection_strategy`: NULL for the default (reconnect every 5 s for up to 60 s); copied.
 * - `error`: NULL or a struct filled on failure (free `error->message` with `free`).
 *
 * Returns the connected session, owned by the caller (`session_close` then `session_free`), or
 * NULL on failure. Once the listener has seen CONNECTED_ACTIVE, the session is returned even if a
 * callback closed it since; if a callback freed it, NULL with DIFF_ERR_SESSION_CLOSED (or the
 * failure that had closed it). Called from inside a libsession callback (but the reconnection
 * function) it fails with DIFF_ERR_ILLEGAL_STATE.
 */
SESSION_T *session_create(const char *url_str,
                          const char *principal,
                          CREDENTIALS_T *credentials,
                          SESSION_LISTENER_T *listener,
                          RECONNECTION_STRATEGY_T *reconnection_strategy,
                          DIFFUSION_ERROR_T *error);

/**
 * As `session_create`, storing `user_context` for `session_get_user_context`.
 * The library never dereferences `user_context`.
 */
SESSION_T *session_create_with_user_context(const char *url_str,
                                            const char *principal,
                                            CREDENTIALS_T *credentials,
                                            SESSION_LISTENER_T *listener,
                                            RECONNECTION_STRATEGY_T *reconnection_strategy,
                                            void *user_context,
                                            DIFFUSION_ERROR_T *error);

/**
 * Starts opening a session and returns at once.
 *
 * Exactly one of `callbacks->on_connected` / `callbacks->on_error` runs later, on a libsession
 * I/O thread (or inside `session_close` if the session is closed before it connects). Arguments
 * as for `session_create`; `callbacks` is required and copied.
 *
 * Returns the session handle, owned by the caller (`session_close` then `session_free`), or NULL
 * with `*error` filled when the arguments are invalid (no callback runs then) or when a callback
 * freed the session before this call returned (DIFF_ERR_SESSION_CLOSED; the callbacks ran).
 * A callback that frees the session makes the returned handle invalid too.
 */
SESSION_T *session_create_async(const char *url_str,
                                const char *principal,
                                CREDENTIALS_T *credentials,
                                SESSION_LISTENER_T *listener,
                                RECONNECTION_STRATEGY_T *reconnection_strategy,
                                SESSION_CREATE_CALLBACK_T *callbacks,
                                DIFFUSION_ERROR_T *error);

/**
 * As `session_create_async`, storing `user_context` for `session_get_user_context`.
 */
SESSION_T *session_create_async_with_user_context(const char *url_str,
                                                  const char *principal,
                                                  CREDENTIALS_T *credentials,
                                                  SESSION_LISTENER_T *listener,
                                                  RECONNECTION_STRATEGY_T *reconnection_strategy,
                                                  SESSION_CREATE_CALLBACK_T *callbacks,
                                                  void *user_context,
                                                  DIFFUSION_ERROR_T *error);

/**
 * Closes the session. The listener sees CLOSED_BY_CLIENT on the calling thread before this
 * returns. If a callback of the session is running on another thread, this waits for it to
 * return; after this returns, no other callback of the session starts. A connected session
 * first sends what was published and makes sure the server has handled it (this waits up to
 * 1 s in all when called outside the session's callbacks). Closing a closed session does nothing
 * and succeeds. May be called from any thread, inside any callback.
 *
 * Returns 1 on success, 0 with `*error` filled (when not NULL) if `session` is NULL.
 */
int session_close(SESSION_T *session, DIFFUSION_ERROR_T *error);

/**
 * Releases the application's reference to the session, closing it first if it is open (as
 * `session_close`: waits for a callback of the session running on another thread). After this
 * returns no callback of the session starts, and the pointer must not be used again. Callbacks
 * already running on the calling thread (when called from inside one) keep the session valid
 * until they return. May be called from any thread, inside any callback; inside a callback of a
 * blocking create, that create then returns NULL. NULL does nothing.
 */
void session_free(SESSION_T *session);

/**
 * The session's current state: CONNECTING from its create call on (also for a session still
 * being created asynchronously), SESSION_STATE_UNKNOWN for NULL. Thread-safe.
 */
SESSION_STATE_T session_state_get(SESSION_T *session);

/**
 * 1 if the session is CONNECTED_ACTIVE, else 0 (also for NULL). Thread-safe.
 */
int session_is_connected(const SESSION_T *session);

/**
 * 1 if the session is RECOVERING_RECONNECT, else 0 (also for NULL). Thread-safe.
 */
int session_is_recovering(const SESSION_T *session);

/**
 * 1 if the session is in a closed state, else 0 (also for NULL). Thread-safe.
 */
int session_is_closed(const SESSION_T *session);

/**
 * The session's id, or NULL before the server has assigned one (or for a NULL session).
 * The pointer stays valid until `session_free`; do not free it.
 */
const SESSION_ID_T *session_get_id(const SESSION_T *session);

/**
 * The `user_context` given at creation (NULL if none, or for a NULL session).
 */
void *session_get_user_context(const SESSION_T *session);

/**
 * Fills `*error` with the reason the session closed (CLOSED_FAILED or CLOSED_BY_SERVER).
 *
 * Returns 1 and fills `*error` (free `error->message`) when there is such a reason; returns 0 and
 * leaves `*error` untouched when the session is open or was closed by the client, or when either
 * argument is NULL.
 */
int session_get_error(const SESSION_T *session, DIFFUSION_ERROR_T *error);

/**
 * Fills `*error` with why the most recent session create call on this thread returned NULL
 * (`session_create*`, including the factory forms, which have no error parameter).
 *
 * Returns 1 and fills `*error` (free `error->message`) when that call failed; returns 0 and
 * leaves `*error` untouched when it succeeded, when there was none, or when `error` is NULL.
 */
int session_last_error(DIFFUSION_ERROR_T *error);

/**
 * Formats a session id as 32 hex digits, `server_instance-value`.
 *
 * Returns a string from malloc for the caller to `free()`, or NULL when `session_id` is NULL.
 */
char *session_id_to_string(const SESSION_ID_T *session_id);

/**
 * Trusts the CA certificates in the PEM file at `pem_path`, in addition to the system's roots
 * (or instead of them after `diffusion_session_factory_trust_system_roots(factory, false)`).
 * May be called several times. The file is read at each connection; an unreadable file, one
 * without certificates, or one that is not a regular file of at most 4 MiB fails the session
 * with DIFF_ERR_ILLEGAL_ARGUMENT naming it. NULL
 * arguments: no-op.
 */
void diffusion_session_factory_certificate_authority(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                     const char *pem_path);

/**
 * Whether the system's root certificates are trusted (default true). With false, only the CAs
 * given with `diffusion_session_factory_certificate_authority` are. NULL factory: no-op.
 */
void diffusion_session_factory_trust_system_roots(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                  bool trust);

/**
 * The name sent as SNI and checked against the server's certificate, instead of the URL's host
 * (for connecting by IP address, or through an address that differs from the certificate's
 * name); NULL restores the URL's host. NULL factory: no-op.
 */
void diffusion_session_factory_tls_server_name(const DIFFUSION_SESSION_FACTORY_T *factory,
                                               const char *name);

/**
 * Sets the certificate validation callback (copied); NULL (or a NULL `validate`) removes it.
 * Host name verification and expiry checks stay on unless the callback accepts. NULL factory:
 * no-op (and `free_context` is not called).
 */
void diffusion_session_factory_certificate_validation(const DIFFUSION_SESSION_FACTORY_T *factory,
                                                      const DIFFUSION_CERTIFICATE_VALIDATION_T *validation);

/**
 * Sets the transports to try, in order, for each connection attempt: `count` entries of `list`
 * (copied; a transport may appear more than once). The session stays CONNECTING while the list is
 * tried; when every entry fails, the initial retry strategy decides on another round, and the
 * error names what each transport failed with. Default: WEBSOCKET only. xhr:// and xhrs:// URLs
 * use HTTP_POLLING whatever the list.
 *
 * Returns 1, or 0 (nothing changed) when the factory or list is NULL, `count` is 0, or an entry
 * is not WEBSOCKET or HTTP_POLLING.
 */
int diffusion_session_factory_transports(const DIFFUSION_SESSION_FACTORY_T *factory,
                                         const TRANSPORT_TYPE_T *list,
                                         size_t count);

/**
 * The transport of the session's current connection (its last one once closed);
 * TRANSPORT_TYPE_NONE before the first connection or for NULL. Thread-safe.
 */
TRANSPORT_TYPE_T session_get_transport(const SESSION_T *session);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The name of `state` ("CONNECTED_ACTIVE", ...) as a static string; "UNKNOWN" for
 * SESSION_STATE_UNKNOWN and for values outside SESSION_STATE_T. Never NULL, never to be freed.
 * Thread-safe.
 */
const char *session_state_as_string(const SESSION_STATE_T state);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  /* LIBSESSION_SESSION_H */
