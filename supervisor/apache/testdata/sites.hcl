# Sites of every shape, for the golden file. @TESTDATA@ is this directory.
socket_dir = "/run/sockvisor"

apache {
  flavor = "debian"
}

site "blog.example" {
  aliases = ["www.blog.example"]
  tls {
    certificate = "@TESTDATA@/tls/cert.pem"
    key         = "@TESTDATA@/tls/key.pem"
  }
}

site "app.example" {
  listen = ["*:80", "*:8080"]
}

site "panel.example" {
  render = "include"
}

backend "wp" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  site          = "blog.example"
  document_root = "/usr/share/wordpress"
  fallback      = "/index.php"
  alias         = { "/wp-content/" = "@TESTDATA@/static/wp-content/" }
}

backend "wiki" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  site          = "app.example"
  mount         = "/dokuwiki/"
  document_root = "/usr/share/dokuwiki"
  htaccess      = true
  index         = ["doku.php"]
  instances     = 2
}

backend "django" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  site    = "app.example"
  alias   = { "/static/" = "@TESTDATA@/static/django/" }
}

backend "asgi" {
  preset    = "generic"
  command   = ["/bin/true"]
  site      = "app.example"
  mount     = "/pyasgi/"
  websocket = true
}

backend "panel" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  site    = "panel.example"
  mount   = "/app/"
}

backend "legacy" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/old/"
  document_root = "/var/www/old"
  fcgi_proxy_all = true
}

backend "u" {
  preset  = "uwsgi"
  command = ["/bin/true"]
  mount   = "/u/"
  alias   = { "/u/media" = "@TESTDATA@/static/django" }
}
