# Rack app for backend tests: answers "ok <pid>".
run lambda { |_env| [200, { "content-type" => "text/plain" }, ["ok #{Process.pid}\n"]] }
