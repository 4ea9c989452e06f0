<?php
echo "hello from php ", getmypid(), "\n";
