# A tiny Rack app for Puma: says which process answered.
run lambda { |env| [200, { "Content-Type" => "text/plain" }, ["hello from pid #{Process.pid}\n"]] }
