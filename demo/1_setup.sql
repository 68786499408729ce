-- campus_sync demo: the targets and a sample person table
\set QUIET on
\pset footer off
\echo '== installing campus_sync and configuring the two targets (mock APIs on 127.0.0.1)'
CREATE EXTENSION campus_sync;
CREATE SERVER opscom FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url :'mock_api', login_source 'BANNER');
CREATE SERVER cloudcard FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'cloudcard', url :'mock_api', send_invitation 'false');
-- secrets live in user mappings
CREATE USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard OPTIONS (persistent_access_token 'pat-test-0123456789abcdef');
\echo '== check_server(): the url answers, TLS verifies, the credentials are accepted; nothing changes remotely'
SELECT server, ok, http_status, detail FROM campus_sync.check_server();

-- a person table as a Banner extract might fill it
CREATE TABLE people (
  banner_id   text PRIMARY KEY,
  first_name  text,
  last_name   text,
  email       text,
  state       char(2),
  date_of_birth date,
  user_type_id int,
  dorm        text
);
INSERT INTO people VALUES
  ('B00010001', 'Ada',    'Lovelace', 'ada@campus.edu',    'MA', '2004-12-10', 6, 'West'),
  ('B00010002', 'Grace',  'Hopper',   'grace@campus.edu',  'NY', '2003-12-09', 6, 'East'),
  ('B00010003', 'Alan',   'Turing',   'alan@campus.edu',   'NJ', '2002-06-23', 7, NULL),
  ('B00010004', 'Zoë "Z"','O''Neil',  'zoe@campus.edu',    'VT', '2005-01-31', 6, 'North'),
  ('B00010005', 'Bad',    'Row',      'not-an-email',      'CA', NULL,         6, NULL);
SELECT * FROM people;
