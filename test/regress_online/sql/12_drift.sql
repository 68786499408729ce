-- Drift against CloudCard: cloudcard_diff(person) compares the body a row
-- would send with the person CloudCard has (GET /person/{key}, read-only);
-- cloudcard_drift(query) does it for every row of a query, many at once.
SELECT mock_reset();

CREATE TABLE drift_people (identifier text, email text, cardholder_group_name text,
                           enabled boolean, role_office boolean, custom_fields jsonb);
INSERT INTO drift_people VALUES
  ('D1', 'd1@foo.edu', 'Students', true, true, '{"Dorm": "West", "Class Year": "2027"}'),
  ('D2', 'd2@foo.edu', 'Staff', NULL, NULL, NULL);
-- CloudCard has them as they are here
SELECT mock('cloudcard_seed', '{"identifier": "D1", "email": "d1@foo.edu", "cardholderGroupName": "Students",
                                "enabled": true, "roles": ["ROLE_CARDHOLDER", "ROLE_OFFICE"],
                                "customFields": {"Dorm": "West", "Class Year": "2027"}}') ->> 'identifier' AS seeded;
SELECT mock('cloudcard_seed', '{"identifier": "D2", "email": "d2@foo.edu", "cardholderGroupName": "Staff"}') ->> 'identifier' AS seeded;

-- As sent: nothing differs.
SELECT p.identifier, d.* FROM drift_people p, LATERAL campus_sync.cloudcard_diff(p) d;

-- Changed here since, and a person CloudCard does not have.
UPDATE drift_people SET email = 'new@foo.edu', role_office = false,
                        custom_fields = '{"Dorm": "East", "Class Year": "2027", "Locker": "7"}'
WHERE identifier = 'D1';
INSERT INTO drift_people VALUES ('D3', 'd3@foo.edu', NULL, NULL, NULL, NULL);
SELECT p.identifier, d.* FROM drift_people p, LATERAL campus_sync.cloudcard_diff(p) d ORDER BY 1;
SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM drift_people') ORDER BY 1, 2;
-- a query of whole rows, and a mapping, as the other functions take them
SELECT * FROM campus_sync.cloudcard_drift('SELECT p FROM drift_people p WHERE identifier = ''D1''',
                                          '{"email": null}') ORDER BY 1, 2;
-- CloudCard was only read
SELECT r->>'method' AS method, regexp_replace(r->>'path', '^/person/.*', '/person/{key}') AS path, count(*)
FROM mock_requests() r GROUP BY 1, 2 ORDER BY 1, 2;

-- The key of a server with find_by 'email' is the email.
SELECT d.* FROM drift_people p, LATERAL campus_sync.cloudcard_diff(p, server => 'cloudcard_static') d
WHERE identifier = 'D3';

-- NULL in, nothing out.
SELECT count(*) AS no_rows FROM campus_sync.cloudcard_diff(NULL::drift_people);
SELECT count(*) AS no_rows FROM campus_sync.cloudcard_drift(NULL);

-- What raises: an invalid row (as cloudcard_payload does), a key the path
-- would misread, a query that returns no rows, the wrong server, a pause.
SELECT err($q$SELECT campus_sync.cloudcard_payload(p) FROM (SELECT 'E1' AS identifier, 'nope' AS email) p$q$);
SELECT err($q$SELECT d.* FROM (SELECT 'E1' AS identifier, 'nope' AS email) p, LATERAL campus_sync.cloudcard_diff(p) d$q$);
SELECT err($q$SELECT * FROM campus_sync.cloudcard_drift($$SELECT 'E1' AS identifier, 'nope' AS email$$)$q$);
SELECT err($q$SELECT d.* FROM (SELECT '..' AS identifier) p, LATERAL campus_sync.cloudcard_diff(p) d$q$);
SELECT err($q$SELECT * FROM campus_sync.cloudcard_drift($$SELECT 'x/y' AS identifier$$)$q$);
SELECT err($q$SELECT * FROM campus_sync.cloudcard_drift('UPDATE drift_people SET email = email')$q$);
SELECT err($q$SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM drift_people', server => 'opscom')$q$);
SELECT err($q$SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM drift_people', server => NULL)$q$);
SELECT campus_sync.pause('cloudcard', 'test');
SELECT regexp_replace(err($q$SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM drift_people')$q$),
                      'since .* by', 'since ... by');
SELECT campus_sync.resume('cloudcard');
-- CloudCard's failure, redacted: the answer echoes the token
SELECT mock('behave?method=GET&path_prefix=/person/&status=500&echo=true&count=1&body=%7B%22message%22%3A%22token%20%24%7Btoken%7D%22%7D');
SELECT err($q$SELECT d.* FROM drift_people p, LATERAL campus_sync.cloudcard_diff(p, server => 'cloudcard_static') d
           WHERE identifier = 'D2'$q$);

DROP TABLE drift_people;
