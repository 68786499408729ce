/*-------------------------------------------------------------------------
 *
 * pace.h
 *	  max_rate and a 429's Retry-After, per target: see pace.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_PACE_H
#define CAMPUS_SYNC_PACE_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "target.h"

extern void pace_request_shmem(void);
extern TimestampTz pace_next_start(SyncTarget *target);
extern bool pace_take(SyncTarget *target, TimestampTz *at);
extern void pace_take_now(SyncTarget *target);
extern void pace_block(SyncTarget *target, double seconds);
extern void pace_wait(SyncTarget *target);
extern void pace_sleep_until(TimestampTz at);

#endif							/* CAMPUS_SYNC_PACE_H */
