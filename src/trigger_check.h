/*-------------------------------------------------------------------------
 *
 * trigger_check.h
 *	  Checking a sync trigger's arguments: at its first write (enqueue.c)
 *	  and, without writing a row, with campus_sync.check_trigger().
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_TRIGGER_CHECK_H
#define CAMPUS_SYNC_TRIGGER_CHECK_H

#include "postgres.h"

#include "utils/rel.h"

#include "payload.h"
#include "target.h"

extern void trigger_target_and_payload(Trigger *tg, Relation rel, SyncTarget **target,
									   PayloadPlan **payload);

#endif							/* CAMPUS_SYNC_TRIGGER_CHECK_H */
