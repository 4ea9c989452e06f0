# /etc/sockvisor/sockvisor.hcl: sockvisor's config. As shipped it starts
# nothing: uncomment a backend (or copy one from /usr/share/doc/sockvisor/examples/)
# and run `sockvisor check`, then `systemctl reload sockvisor`.
# Every key is optional; the values shown are the defaults.

# socket_dir      = "/run/sockvisor"      # sockvisor owns this directory
# socket_dir_mode = "2750"                # setgid: sockets inherit the group
# socket_owner    = "root"
# socket_group    = "www-data"            # Apache's run group (apache on RHEL)
# selinux_type    = "httpd_var_run_t"     # applied only where SELinux is enabled
# control_socket  = "/run/sockvisor.ctl"  # root-only control API
# backlog         = 0                     # listen backlog; 0 = net.core.somaxconn
# log_level       = "info"                # trace | debug | info | warn | error
# log_format      = "text"                # text | json

apache {
  # flavor      = "auto"                  # auto | debian | rhel
  # config_file = ""                      # default: conf-available/sockvisor.conf or conf.d/sockvisor.conf
  # unit        = ""                      # default: apache2.service or httpd.service
  # reload      = "dbus"                  # dbus | apachectl | none
}

# backend "app" {
#   preset    = "gunicorn"                # gunicorn | uwsgi | php-fpm | uvicorn | puma | generic
#   command   = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", "/srv/app", "app:app"]
#   mount     = "/"                       # URL path Apache forwards; "" = none
#   user      = "www-data"
#   ready { path = "/" }
# }
