-- wrk script for the POST phase of bench/run.sh: every request creates one task.
-- The bearer token is passed on the wrk command line (-H "Authorization: Bearer ..."), so this file
-- holds nothing secret and nothing run-specific; the project id is in the URL.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench task"}'
