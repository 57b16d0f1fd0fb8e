/*
 * Compiles session.h as C++11 (-pedantic): the build fails if the header does not, and the
 * declarations must have C linkage and the vendor API's numbers and signatures.
 */
#include "session.h"

#include <type_traits>

static_assert(HANDLER_SUCCESS == 0 && HANDLER_FAILURE == -1, "handler results");
static_assert(SESSION_STATE_UNKNOWN == -1 && CONNECTING == 0 && CONNECTED_ACTIVE == 2 &&
                  CLOSED_BY_CLIENT == 5 && CLOSED_FAILED == 7,
              "session state numbers");
static_assert(DIFF_ERR_AUTHENTICATION_FAILED == 31 && DIFF_ERR_ILLEGAL_ARGUMENT == 48,
              "error code numbers");
static_assert(std::is_standard_layout<DIFFUSION_ERROR_T>::value, "DIFFUSION_ERROR_T is a C struct");
static_assert(sizeof(SESSION_ID_T) == 2 * sizeof(uint64_t), "SESSION_ID_T is two uint64_t");

static_assert(std::is_same<decltype(&session_create),
                           SESSION_T *(*)(const char *, const char *, CREDENTIALS_T *,
                                          SESSION_LISTENER_T *, RECONNECTION_STRATEGY_T *,
                                          DIFFUSION_ERROR_T *)>::value,
              "session_create signature");
static_assert(std::is_same<decltype(&session_close), int (*)(SESSION_T *, DIFFUSION_ERROR_T *)>::value,
              "session_close signature");
static_assert(std::is_same<decltype(&session_state_as_string),
                           const char *(*)(SESSION_STATE_T)>::value,
              "session_state_as_string signature");

namespace {

int on_connected(SESSION_T *)
{
        return HANDLER_SUCCESS;
}

int on_error(SESSION_T *, DIFFUSION_ERROR_T *)
{
        return HANDLER_FAILURE;
}

}  // namespace

// A C++ caller fills the structs in declaration order (no designated initialisers in C++11).
extern const SESSION_CREATE_CALLBACK_T check_cxx_callbacks;
const SESSION_CREATE_CALLBACK_T check_cxx_callbacks = { on_connected, on_error };
