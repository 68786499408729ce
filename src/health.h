/*-------------------------------------------------------------------------
 *
 * health.h
 *	  Is a target up?  Consecutive temporary failures (transport errors,
 *	  5xx, 408/425/429) mark it down; while it is down, items are not sent
 *	  and lose no attempts, and one probe goes out at least every 30 s.
 *	  The state is shared through campus_sync.target_health.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_HEALTH_H
#define CAMPUS_SYNC_HEALTH_H

#include "postgres.h"

#include "utils/timestamp.h"

/* consecutive temporary failures that mark a target down */
#define HEALTH_DOWN_AFTER 3
/* probes of a down target: first after 1 s, doubling, at most every 30 s */
#define HEALTH_FIRST_PROBE_S 1.0
#define HEALTH_MAX_PROBE_S 30.0

typedef struct TargetHealth
{
	bool		up;
	int			failures;
	TimestampTz down_since;
	TimestampTz next_probe_at;
	double		probe_interval_s;
	TimestampTz last_success_at;	/* 0: never */
	char	   *last_error;
	TimestampTz last_error_at;
	bool		changed;		/* to be saved */
	MemoryContext mcxt;			/* where last_error lives */
} TargetHealth;

extern void health_load(const char *server, TargetHealth *health);
extern void health_save(const char *server, TargetHealth *health);
extern void health_success(TargetHealth *health, TimestampTz now);
extern bool health_failure(TargetHealth *health, bool temporary, const char *error,
						   double retry_after_s, TimestampTz now, bool was_probe);
extern bool health_probe_due(TargetHealth *health, TimestampTz now);

#endif							/* CAMPUS_SYNC_HEALTH_H */
