-- From a row to the OPS-COM body: names, alternate names, mapping, values,
-- validation.  opscom_payload sends nothing and leaves the apiToken out.

-- Every field of the API page, under its first name.
CREATE TABLE people_a (
  unique_id text, login_source text, first_name text, last_name text, user_name text,
  email text, street text, city text, province text, postal_code text, street2 text,
  city2 text, province2 text, postal_code2 text, phone_cell text, user_type_id int,
  employ_no text, employee_phone text, student_no text, student_phone text,
  driver_licence_num text, date_of_birth date, locker_user_type_id bigint,
  driver_licence_prov text, banner_note text);
INSERT INTO people_a VALUES (
  'tester23', 'OPSCOM', 'firstname', 'lastname', 'username', 'test@test.com',
  '123 Main Street', 'Everywhere', 'bc', 'HOHOHO', '123 General Street', 'Somewhere',
  'AB', 'A9A9A9', '613-555-1212', 6, 'employee number: default', 'emp ph. klondike 555',
  'SN 543209854', '999', 'QC 99999999', '1901-01-31', 3, 'BC', 'not an API field');
SELECT jsonb_pretty(campus_sync.opscom_payload(p)) FROM people_a p;

-- ... and under the alternate names.
CREATE TABLE people_b (unique_id text, state text, zip text, state2 text, zip2 text,
                       driver_license_num text, driver_license_state text);
INSERT INTO people_b VALUES ('u2', 'NY', '12345-1212', 'MA', '54321-1212', 'NYNY', 'CA');
SELECT campus_sync.opscom_payload(p) FROM people_b p;

-- The body text itself: API order, numbers as strings, NULLs left out.
CREATE TABLE people_c (unique_id text, first_name text, last_name text, user_type_id numeric,
                       email text, city text);
INSERT INTO people_c VALUES ('u3', 'Ann', NULL, 6, NULL, 'Kingston');
SELECT campus_sync.opscom_payload(p)::text FROM people_c p;
SELECT jsonb_typeof(campus_sync.opscom_payload(p) -> 'user_type_id') FROM people_c p;
SELECT campus_sync.opscom_payload(p) ? 'last_name' AS has_null_field FROM people_c p;

-- login_source: a column wins over the server option; the option fills in.
SELECT campus_sync.opscom_payload(p) ->> 'login_source' FROM people_a p;
SELECT campus_sync.opscom_payload(p) ->> 'login_source' FROM people_c p;
SELECT campus_sync.opscom_payload(p, options => '{"login_source": "OPSCOM"}') ->> 'login_source' FROM people_c p;

-- Dates are yyyy-mm-dd whatever DateStyle is.
SET DateStyle = 'SQL, DMY';
SELECT now()::date::text ~ '/' AS datestyle_is_sql_dmy;
CREATE TABLE people_d (unique_id text, date_of_birth date);
INSERT INTO people_d VALUES ('d1', '31/01/1999'), ('d2', '05/07/0987');
SELECT campus_sync.opscom_payload(p) ->> 'date_of_birth' FROM people_d p ORDER BY unique_id;
SET TimeZone = 'America/Toronto';
SELECT campus_sync.opscom_payload(x) ->> 'date_of_birth'
FROM (SELECT 'd3'::text AS unique_id, '2001-02-03 23:30:00+00'::timestamptz AS date_of_birth) x;
SELECT campus_sync.opscom_payload(x) ->> 'date_of_birth'
FROM (SELECT 'd4'::text AS unique_id, '2001-02-03 23:30:00'::timestamp AS date_of_birth) x;
RESET DateStyle;
RESET TimeZone;
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'd5'::text AS unique_id, 'infinity'::date AS date_of_birth) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'd6'::text AS unique_id, '0044-03-15 BC'::date AS date_of_birth) x$q$);
-- a text date must be a real yyyy-mm-dd date
SELECT campus_sync.opscom_payload(x) ->> 'date_of_birth' FROM (SELECT 'd7'::text AS unique_id, '2000-02-29'::text AS date_of_birth) x;
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'd8'::text AS unique_id, '2001-02-29'::text AS date_of_birth) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'd9'::text AS unique_id, '31/01/1999'::text AS date_of_birth) x$q$);

-- JSON escaping: quotes, backslashes, control characters and any UTF-8.
SELECT campus_sync.opscom_payload(x)::text
FROM (SELECT 'e1'::text AS unique_id,
             E'O"Brien \\ back\nslash\ttab \u00e9\U0001F600' AS first_name,
             E'bell\x07 and \x1f' AS last_name) x;
SELECT (campus_sync.opscom_payload(x) ->> 'first_name') = E'O"Brien \\ back\nslash\ttab \u00e9\U0001F600' AS round_trips
FROM (SELECT 'e1'::text AS unique_id, E'O"Brien \\ back\nslash\ttab \u00e9\U0001F600' AS first_name) x;

-- Lengths are characters, not bytes: 50 emoji fit in first_name, 51 do not.
SELECT length(campus_sync.opscom_payload(x) ->> 'first_name')
FROM (SELECT 'e2'::text AS unique_id, repeat(U&'\+01F600', 50) AS first_name) x;
SELECT err($q$SELECT campus_sync.opscom_payload(x)
FROM (SELECT 'e3'::text AS unique_id, repeat(U&'\+01F600', 51) AS first_name) x$q$);

-- Every documented limit, one over it (22001).
CREATE FUNCTION over_limit(field text, len int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  row_json jsonb := jsonb_build_object('unique_id', 'lim', field, repeat('x', len));
BEGIN
  PERFORM campus_sync.opscom_payload(jsonb_populate_record(NULL::people_a, row_json));
  RETURN 'accepted';
EXCEPTION WHEN others THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT f, over_limit(f, n - 0) AS at_limit, over_limit(f, n + 1) AS over
FROM (VALUES ('unique_id', 50), ('login_source', 20), ('first_name', 50), ('last_name', 50),
             ('user_name', 50), ('city', 50), ('postal_code', 20), ('street2', 20),
             ('city2', 50), ('postal_code2', 20), ('phone_cell', 20), ('employ_no', 50),
             ('employee_phone', 50), ('student_no', 50), ('student_phone', 50),
             ('driver_licence_num', 255)) v(f, n);
SELECT over_limit('street', 5000) AS street_has_no_limit;
-- email: 100 characters
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'l1'::text AS unique_id, repeat('a', 94) || '@ex.edu' AS email) x$q$);
-- the same limits apply to the alternate names
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'l2'::text AS unique_id, repeat('9', 21) AS zip) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'l3'::text AS unique_id, repeat('9', 256) AS driver_license_num) x$q$);

-- 2-letter province/state codes
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'r1'::text AS unique_id, 'California'::text AS state) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'r2'::text AS unique_id, 'C'::text AS province) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'r3'::text AS unique_id, 'Q1'::text AS driver_licence_prov) x$q$);
SELECT campus_sync.opscom_payload(x) FROM (SELECT 'r4'::text AS unique_id, 'MA'::char(2) AS state2) x;

-- email shape, id numbers
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm1'::text AS unique_id, 'not-an-email'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm2'::text AS unique_id, 'two@@ex.edu'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm3'::text AS unique_id, 'a b@ex.edu'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm4'::text AS unique_id, 'student'::text AS user_type_id) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm5'::text AS unique_id, '-3'::text AS locker_user_type_id) x$q$);

-- ... and an invisible blank in an email (a no-break space, an ideographic space)
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm6'::text AS unique_id, E'ann\u00a0lee@ex.edu'::text AS email) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm7'::text AS unique_id, E'ann@ex.edu\u3000'::text AS email) x$q$);
-- province/state: two ASCII letters, not any letters
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'm8'::text AS unique_id, U&'Q\00C9'::text AS province) x$q$);

-- Numbers: sent as strings; numeric as numeric_out writes it, floats as the
-- shortest decimal that reads back exactly, whatever extra_float_digits.
SET extra_float_digits = 0;
SELECT campus_sync.opscom_payload(x)::text
FROM (SELECT 12345678901234567890.000::numeric AS unique_id, 0.1::float8 + 0.2::float8 AS phone_cell,
             1e20::float8 AS employ_no, 1.1::real AS student_no, 6.50::numeric(4,2) AS student_phone,
             '-0'::float8 AS city, 7::smallint AS user_type_id) x;
RESET extra_float_digits;
-- NaN, Infinity and -Infinity are refused in every field (22P02): as
-- unique_id they would make every such row one person, and no field has a
-- use for them.  The text 'NaN' is text, and is sent.
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'NaN'::numeric AS unique_id) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'Infinity'::float8 AS unique_id) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'n1'::text AS unique_id, '-Infinity'::real AS user_type_id) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'n2'::text AS unique_id, 'NaN'::float8 AS phone_cell) x$q$);
CREATE DOMAIN student_number AS numeric;
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'n3'::text AS unique_id, '-Infinity'::student_number AS student_no) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(b, '{"unique_id": "id"}') FROM (SELECT 'NaN'::float8 AS id) b$q$);
SELECT campus_sync.opscom_payload(x)::text FROM (SELECT 'NaN'::text AS unique_id, 'Infinity'::text AS first_name) x;
DROP DOMAIN student_number;

-- A name column is a name (fixed-size, not text): sent whole.
SELECT campus_sync.opscom_payload(x)::text FROM (SELECT 'abc'::name AS unique_id, 'bcd'::name AS first_name, 'Grace Hopper'::name AS last_name) x;

-- Required fields (23502)
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT 'Ann'::text AS first_name) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT NULL::text AS unique_id) x$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(x) FROM (SELECT ''::text AS unique_id) x$q$);
CREATE SERVER opscom_nosource FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'http://127.0.0.1:9');
SELECT err($q$SELECT campus_sync.opscom_payload(x, server => 'opscom_nosource') FROM (SELECT 'q1'::text AS unique_id) x$q$);
-- extra required fields, from the server option required_fields
ALTER SERVER opscom_nosource OPTIONS (ADD login_source 'BANNER', ADD required_fields 'email,last_name');
SELECT err($q$SELECT campus_sync.opscom_payload(x, server => 'opscom_nosource') FROM (SELECT 'q2'::text AS unique_id, 'a@ex.edu'::text AS email) x$q$);
SELECT campus_sync.opscom_payload(x, server => 'opscom_nosource', options => '{"required_fields": "email"}')
FROM (SELECT 'q3'::text AS unique_id, 'a@ex.edu'::text AS email) x;
DROP SERVER opscom_nosource;

-- A mapping renames (API field -> column); null leaves a field out.
CREATE TABLE banner_people (banner_id text, fname text, lname text, email text, st char(2), dob date);
INSERT INTO banner_people VALUES ('B00012345', 'Grace', 'Hopper', 'gh@ex.edu', 'VA', '1906-12-09');
SELECT campus_sync.opscom_payload(b, '{"unique_id": "banner_id", "first_name": "fname", "last_name": "lname", "state": "st", "date_of_birth": "dob"}')::text
FROM banner_people b;
SELECT campus_sync.opscom_payload(b, '{"unique_id": "banner_id", "email": null}')::text FROM banner_people b;
SELECT campus_sync.opscom_payload(b, '{"user_name": "email", "unique_id": "banner_id"}') ->> 'user_name' FROM banner_people b;
-- mapping mistakes raise (they are configuration, not data)
SELECT err($q$SELECT campus_sync.opscom_payload(b, '{"unique_id": "bannerid"}') FROM banner_people b$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(b, '{"shoe_size": "fname"}') FROM banner_people b$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(b, '{"unique_id": 7}') FROM banner_people b$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(b, '["unique_id"]') FROM banner_people b$q$);

-- Any row type: a view row, a subquery row, a ROW() with a cast.
CREATE VIEW banner_view AS
  SELECT banner_id AS unique_id, fname AS first_name, 'BANNER'::text AS login_source FROM banner_people;
SELECT campus_sync.opscom_payload(v)::text FROM banner_view v;
SELECT campus_sync.opscom_payload(s)::text FROM (SELECT 'x9' AS unique_id, 42 AS user_type_id) s;
SELECT campus_sync.opscom_payload(ROW('r9', 'Zed', NULL, NULL, NULL, NULL)::people_c)::text;
SELECT campus_sync.opscom_payload(NULL::people_c) IS NULL AS null_row_gives_null;
-- empty strings are sent as they are (they clear a field) and not shape-checked
SELECT campus_sync.opscom_payload(x)::text FROM (SELECT 'z1'::text AS unique_id, ''::text AS state, ''::text AS email) x;

-- Servers: missing, of another wrapper, of the other service, NULL
SELECT err($q$SELECT campus_sync.opscom_payload(p, server => 'nosuch') FROM people_c p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, server => 'cloudcard') FROM people_c p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, server => NULL) FROM people_c p$q$);
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER other_srv FOREIGN DATA WRAPPER other_fdw;
SELECT err($q$SELECT campus_sync.opscom_payload(p, server => 'other_srv') FROM people_c p$q$);
DROP SERVER other_srv;
DROP FOREIGN DATA WRAPPER other_fdw;
