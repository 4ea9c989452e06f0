# Renders the role's template with the role's defaults and the YAML files
# given as arguments (later ones win), as the template module would, and
# prints the result. Used by TestAnsibleExamples; it runs no module and
# connects to nothing.
import sys

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

role = sys.argv[1]
variables = {}
for path in [role + '/defaults/main.yml'] + sys.argv[2:]:
    with open(path) as f:
        variables.update(yaml.safe_load(f) or {})
variables.setdefault('ansible_managed', 'Ansible managed')
with open(role + '/templates/sockvisor.hcl.j2') as f:
    src = f.read()
out = Templar(loader=DataLoader(), variables=variables).template(
    src, preserve_trailing_newlines=True, escape_backslashes=False, convert_data=False)
sys.stdout.write(out)
