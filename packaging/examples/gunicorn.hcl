# A Gunicorn app served at / through Apache over /run/sockvisor/app.sock.
backend "app" {
  preset  = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", "/usr/share/doc/sockvisor/examples/apps", "hello:app"]
  mount   = "/"
  user    = "www-data"
  ready {
    path    = "/"
    timeout = "30s"
  }
}
