# Rack app for the Puma acceptance test, without the rack gem (Puma
# vendors its own builder): it reports what a Rack framework builds its
# URLs from.
run lambda { |env|
  scheme = env["HTTP_X_FORWARDED_PROTO"] || env["rack.url_scheme"]
  host = env["HTTP_X_FORWARDED_HOST"] || env["HTTP_HOST"]
  url = "#{scheme}://#{host}#{env["SCRIPT_NAME"]}#{env["PATH_INFO"]}"
  body = "script_name=#{env["SCRIPT_NAME"]} path_info=#{env["PATH_INFO"]} scheme=#{env["rack.url_scheme"]} url=#{url} pid=#{Process.pid}\n"
  [200, {"Content-Type" => "text/plain"}, [body]]
}
