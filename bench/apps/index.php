<?php
// The benchmarks' PHP page: a short text naming the worker that answered.
header('Content-Type: text/plain');
echo 'hello from php pid ', getmypid(), "\n";
