# uWSGI speaking the uwsgi protocol at /u/, two instances behind an Apache balancer.
backend "u" {
  preset    = "uwsgi"
  protocol  = "uwsgi"
  command   = ["/usr/bin/uwsgi", "--plugin", "python3", "--chdir", "/usr/share/doc/sockvisor/examples/apps", "--module", "hello:app", "--processes", "2"]
  mount     = "/u/"
  instances = 2
  user      = "www-data"
}
