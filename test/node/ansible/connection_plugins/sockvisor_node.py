# Ansible connection to a test node booted by test/node/node.sh: every
# command runs through "node.sh exec DIR", so it lands in the node's own
# mount, pid, net, uts, ipc and cgroup namespaces with the node's root, as
# a shell on a real machine would, and never touches the host. Files go in
# with "node.sh cp-in" and come out through cat. Used by the provisioning
# test only: the role itself talks to real nodes over ssh.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = '''
    name: sockvisor_node
    short_description: run on a sockvisor test node (node.sh exec)
    description:
        - Runs commands inside a node booted by test/node/node.sh.
    author: sockvisor developers
    extends_documentation_fragment:
        - connection_pipelining
    options:
      node_dir:
        description: the node's directory (node.sh boot DIR)
        vars:
          - name: sockvisor_node_dir
        env:
          - name: SOCKVISOR_NODE_DIR
      node_script:
        description: path of node.sh
        vars:
          - name: sockvisor_node_script
        env:
          - name: SOCKVISOR_NODE_SCRIPT
'''

import subprocess

from ansible.errors import AnsibleError, AnsibleFileNotFound
from ansible.module_utils._text import to_bytes
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = 'sockvisor_node'
    has_pipelining = True

    def _node(self):
        d, s = self.get_option('node_dir'), self.get_option('node_script')
        if not d or not s:
            raise AnsibleError('sockvisor_node: set sockvisor_node_dir and sockvisor_node_script')
        return s, d

    def _connect(self):
        self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        script, node = self._node()
        p = subprocess.run([script, 'exec', node, '/bin/sh', '-c', cmd],
                           input=in_data or b'', stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.returncode, p.stdout, p.stderr

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        script, node = self._node()
        p = subprocess.run([script, 'cp-in', node, in_path, out_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise AnsibleError('sockvisor_node: copying %s to %s: %s' % (in_path, out_path, p.stderr))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        script, node = self._node()
        with open(to_bytes(out_path), 'wb') as out:
            p = subprocess.run([script, 'exec', node, 'cat', in_path], stdout=out, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise AnsibleFileNotFound('sockvisor_node: fetching %s: %s' % (in_path, p.stderr))

    def close(self):
        self._connected = False
