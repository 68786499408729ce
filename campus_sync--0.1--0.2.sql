/* campus_sync--0.1--0.2.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.2'" to load this file. \quit

-- What 0.2 changes in SQL objects, section by section.  The upgrade-chain
-- test (test/upgrade_chain.sh) proves that 0.1 updated with this file has
-- the same catalog as a fresh 0.2.
