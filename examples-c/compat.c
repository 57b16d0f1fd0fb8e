/*
 * Code written for the vendor's C API compiles unchanged: it names the struct tags, assigns a
 * handler with parameters to on_handler_error, declares callbacks with the vendor's const
 * parameters and passes a non-const retry strategy. Compiled (not run) twice by CMake: as C99
 * with -Werror, and as gnu17 with -Werror=incompatible-pointer-types (GCC 14's defaults).
 */
#include <stddef.h>

#include "session.h"

// Forward declarations, as headers of applications written for the vendor's API have them.
struct session_listener_s;
struct session_create_callback_s;
struct diffusion_error_s;

static void on_state_changed(SESSION_T *session, const SESSION_STATE_T old_state, const SESSION_STATE_T new_state)
{
        (void)session;
        (void)old_state;
        (void)new_state;
}

// The vendor's examples give on_handler_error a handler with parameters.
static void on_handler_error(SESSION_T *session, const DIFFUSION_ERROR_T *error)
{
        (void)session;
        (void)error;
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
        return HANDLER_SUCCESS;
}

static RECONNECTION_ATTEMPT_ACTION_T on_reconnect(SESSION_T *session, void *args)
{
        (void)session;
        (void)args;
        return RECONNECTION_ATTEMPT_ACTION_START;
}

static void after_reconnect(SESSION_T *session, void *args)
{
        (void)session;
        (void)args;
}

static void fill_listener(struct session_listener_s *listener)
{
        listener->on_state_changed = on_state_changed;
        listener->on_handler_error = on_handler_error;
}

void compat_uses_every_declaration(void);

void compat_uses_every_declaration(void)
{
        struct session_listener_s listener = { 0 };
        fill_listener(&listener);
        SESSION_LISTENER_T *as_typedef = &listener;

        struct session_create_callback_s callbacks = { 0 };
        callbacks.on_connected = on_connected;
        callbacks.on_error = on_error;
        SESSION_CREATE_CALLBACK_T *callbacks_typedef = &callbacks;

        struct diffusion_error_s error = { 0 };
        DIFFUSION_ERROR_T *error_typedef = &error;

        PERFORM_RECONNECTION_CB reconnect = on_reconnect;
        PERFORM_RECONNECTION_AFTER_ACTION_CB success = after_reconnect;
        RECONNECTION_STRATEGY_T *strategy = make_reconnection_strategy_user_function(reconnect, NULL, success, success);

        DIFFUSION_SESSION_FACTORY_T *factory = diffusion_session_factory_init();
        DIFFUSION_RETRY_STRATEGY_T *retry = diffusion_retry_strategy_create(500, 10, NULL);
        diffusion_session_factory_initial_retry_strategy(factory, retry);
        diffusion_session_factory_session_listener(factory, as_typedef);

        SESSION_T *session = session_create_async(NULL, NULL, NULL, as_typedef, strategy, callbacks_typedef, error_typedef);
        session_free(session);
        diffusion_retry_strategy_free(retry);
        diffusion_session_factory_free(factory);
        free_reconnection_strategy(strategy);
        diffusion_error_free(&error);
}
