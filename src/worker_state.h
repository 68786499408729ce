/*-------------------------------------------------------------------------
 *
 * worker_state.h
 *	  What the background worker shares with every backend: who it is, what
 *	  it is doing, what it last did, and how to wake it.  Exists only when
 *	  campus_sync is in shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_WORKER_STATE_H
#define CAMPUS_SYNC_WORKER_STATE_H

#include "postgres.h"

/* What the worker is doing, as the campus_sync.worker view shows it. */
typedef enum WorkerActivity
{
	WORKER_STARTING,
	WORKER_WAITING_FOR_EXTENSION,
	WORKER_STANDBY,
	WORKER_IDLE,
	WORKER_DELIVERING
} WorkerActivity;

extern void worker_state_request_shmem(void);

/* by the worker */
extern void worker_state_started(void);
extern void worker_state_set(WorkerActivity activity);
extern void worker_state_cycle_ended(int64 delivered);
extern void worker_state_error(const char *message);
extern bool worker_state_take_wake(void);

/* by any backend */
extern void worker_wake_at_commit(void);

#endif							/* CAMPUS_SYNC_WORKER_STATE_H */
