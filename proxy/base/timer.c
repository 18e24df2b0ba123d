/*
 * proxy/base/timer.c — see timer.h.
 */
#include "proxy/base/timer.h"

#include <event2/event.h>
#include <sys/time.h>

#include "proxy/base/log.h"

int tg_timer_arm_us(struct event *ev, uint64_t us)
{
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    if (evtimer_add(ev, &tv) == 0)
        return 0;
    tg_error("cannot arm a timer of %llu us", (unsigned long long)us);
    return -1;
}

int tg_timer_arm_ms(struct event *ev, uint64_t ms)
{
    return tg_timer_arm_us(ev, ms * 1000);
}

int tg_timer_set_ms(struct event *ev, uint64_t ms)
{
    if (ms == 0)
        return evtimer_del(ev) == 0 ? 0 : -1;
    return tg_timer_arm_ms(ev, ms);
}
