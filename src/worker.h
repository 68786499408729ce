/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker that delivers the queue of one database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_WORKER_H
#define CAMPUS_SYNC_WORKER_H

extern char *campus_sync_database;
extern int	campus_sync_poll_interval_ms;

extern void worker_register(void);

#endif							/* CAMPUS_SYNC_WORKER_H */
