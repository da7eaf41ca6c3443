/*
 * Fault injection for the fault suite: HUBMETER_FAULT=<point> makes the process kill
 * itself (SIGKILL, no cleanup) the first time it reaches that named point, after one log
 * line the test can look for. Unset, a call costs one cached comparison.
 */
#include "common/common.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cm_fault(const char *point)
{
    static const char *armed;
    static int loaded;
    if (!__atomic_load_n(&loaded, __ATOMIC_ACQUIRE)) {
        armed = getenv("HUBMETER_FAULT");
        __atomic_store_n(&loaded, 1, __ATOMIC_RELEASE);
    }
    if (armed == NULL || strcmp(armed, point) != 0)
        return;
    cm_log(CM_LOG_WARN, "fault_point_reached", "point=%s", point);
    kill(getpid(), SIGKILL);
    pause();
}
