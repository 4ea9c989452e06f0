<?php
// PHP script for backend tests.
echo "hello from php ", getmypid(), "\n";
