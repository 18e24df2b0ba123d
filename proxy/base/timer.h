/*
 * proxy/base/timer.h — arming libevent timers from milliseconds or
 * microseconds, with the result checked: a timer libevent refuses to arm
 * is logged (a deadline or a timeout that silently never fires would
 * leave a request hanging).
 */
#ifndef TG_BASE_TIMER_H
#define TG_BASE_TIMER_H

#include <stdint.h>

struct event;

/* Fires ev once after us microseconds (0: on the loop's next turn).
 * Returns 0, or -1 (logged) if libevent refused. */
int tg_timer_arm_us(struct event *ev, uint64_t us);

/* The same in milliseconds. */
int tg_timer_arm_ms(struct event *ev, uint64_t ms);

/* For timeouts where 0 means "none": arms ev after ms, or disarms it. */
int tg_timer_set_ms(struct event *ev, uint64_t ms);

#endif
