/*-------------------------------------------------------------------------
 *
 * campus_sync.h
 *	  Settings shared by the parts of campus_sync.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_H
#define CAMPUS_SYNC_H

extern int	campus_sync_keep_delivered;

#endif							/* CAMPUS_SYNC_H */
