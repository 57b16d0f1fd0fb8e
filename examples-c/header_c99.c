/*
 * Compiles session.h as strict C99 (-pedantic): the build fails if the header does not.
 * Also pins the vendor API's numbers and signatures that existing C programs rely on.
 */
#include "session.h"

// C99 has no _Static_assert: a negative array size fails the build instead.
#define CHECK(name, condition) typedef char check_##name[(condition) ? 1 : -1]

CHECK(handler_success, HANDLER_SUCCESS == 0);
CHECK(handler_failure, HANDLER_FAILURE == -1);
CHECK(state_unknown, SESSION_STATE_UNKNOWN == -1);
CHECK(state_connecting, CONNECTING == 0);
CHECK(state_connected_active, CONNECTED_ACTIVE == 2);
CHECK(state_closed_by_client, CLOSED_BY_CLIENT == 5);
CHECK(state_closed_failed, CLOSED_FAILED == 7);
CHECK(err_authentication_failed, DIFF_ERR_AUTHENTICATION_FAILED == 31);
CHECK(err_illegal_argument, DIFF_ERR_ILLEGAL_ARGUMENT == 48);
CHECK(session_id_size, sizeof(SESSION_ID_T) == 2 * sizeof(uint64_t));

// The vendor's signatures, as function pointer types the declarations must convert to.
SESSION_T *(*const check_session_create)(const char *, const char *, CREDENTIALS_T *,
                                         SESSION_LISTENER_T *, RECONNECTION_STRATEGY_T *,
                                         DIFFUSION_ERROR_T *) = session_create;
SESSION_T *(*const check_session_create_async)(const char *, const char *, CREDENTIALS_T *,
                                               SESSION_LISTENER_T *, RECONNECTION_STRATEGY_T *,
                                               SESSION_CREATE_CALLBACK_T *,
                                               DIFFUSION_ERROR_T *) = session_create_async;
int (*const check_session_close)(SESSION_T *, DIFFUSION_ERROR_T *) = session_close;
void (*const check_session_free)(SESSION_T *) = session_free;
char *(*const check_session_id_to_string)(const SESSION_ID_T *) = session_id_to_string;
CREDENTIALS_T *(*const check_credentials_create_password)(const char *) = credentials_create_password;
void (*const check_diffusion_error_free)(DIFFUSION_ERROR_T *) = diffusion_error_free;

// Callbacks written as in the vendor's documentation, with const state parameters.
static void on_state_changed(SESSION_T *session, const SESSION_STATE_T old_state,
                             const SESSION_STATE_T new_state)
{
        (void)session;
        (void)old_state;
        (void)new_state;
}

static int on_connected(SESSION_T *session)
{
        (void)session;
        return HANDLER_SUCCESS;
}

static int on_error(SESSION_T *session, DIFFUSION_ERROR_T *error)
{
        (void)session;
        (void)error;
        return HANDLER_FAILURE;
}

const SESSION_LISTENER_T check_listener = { .on_state_changed = on_state_changed };
const SESSION_CREATE_CALLBACK_T check_callbacks = {
        .on_connected = on_connected,
        .on_error = on_error
};
const DIFFUSION_ERROR_T check_error = { DIFF_ERR_SUCCESS, NULL, NULL };
