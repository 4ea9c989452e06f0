# Every scheme sockvisor renders, for the golden file.
socket_dir = "/run/sockvisor"

apache {
  flavor = "debian"
}

backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  mount   = "/"
}

backend "chat" {
  preset    = "gunicorn"
  command   = ["/bin/true"]
  mount     = "/chat/"
  websocket = true
  proxy {
    preserve_host = false
    timeout       = "1500ms"
  }
}

backend "shop" {
  preset    = "gunicorn"
  command   = ["/bin/true"]
  mount     = "/shop"
  instances = 3
  websocket = true
  proxy {
    max     = 20
    acquire = "250ms"
    retry   = "5s"
  }
}

backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/php/"
  document_root = "/var/www/html"
}

backend "php_pool" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/pool/"
  instances     = 2
  document_root = "/srv/pool"
}

backend "legacy" {
  preset  = "uwsgi"
  command = ["/bin/true"]
  mount   = "/u/"
}

backend "legacy2" {
  preset    = "uwsgi"
  command   = ["/bin/true"]
  mount     = "/u/v2/"
  instances = 2
}

backend "worker" {
  preset  = "generic"
  command = ["/bin/true"]
  mount   = ""
}
