# PHP-FPM at /php/: /php/index.php runs /var/www/html/index.php. sockvisor
# generates a minimal pool config and hands PHP-FPM the socket (FPM_SOCKETS).
backend "php" {
  preset        = "php-fpm"
  command       = ["/usr/sbin/php-fpm8.2"]
  mount         = "/php/"
  document_root = "/var/www/html"
  user          = "www-data"
}
