/*-------------------------------------------------------------------------
 *
 * lock_keys.h
 *	  Every advisory lock campus_sync takes, in one place.  An advisory
 *	  lock's key is (database, classid, objid, objsubid); objsubid tells
 *	  campus_sync's kinds apart, and classid is "CSYC" (or "CSYT") so that
 *	  a site's own advisory locks are unlikely to collide.
 *
 *	  campus_sync.deliverer_xids() (SQL, in the install script) finds the
 *	  deliverer lock by the same three numbers; test_release.py checks that
 *	  the two agree.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_LOCK_KEYS_H
#define CAMPUS_SYNC_LOCK_KEYS_H

#define CAMPUS_SYNC_LOCK_CLASS 0x43535943	/* "CSYC" */

/* held by every deliverer for its transaction (shared) */
#define DELIVERER_LOCK_CLASS CAMPUS_SYNC_LOCK_CLASS
#define DELIVERER_LOCK_OBJID 1
#define DELIVERER_LOCK_SUBID 7

/* held by the one deliverer that moves the inbox (exclusive) */
#define MOVER_LOCK_SUBID 8

/* held while a person is claimed or in flight: (key hash, server, 9) */
#define PERSON_LOCK_SUBID 9

/* held while a user mapping's CloudCard session is exchanged: (class, umid) */
#define EXCHANGE_LOCK_CLASS 0x43535954	/* "CSYT" */
#define EXCHANGE_LOCK_SUBID 1

#endif							/* CAMPUS_SYNC_LOCK_KEYS_H */
