# Import a droplet by its numeric ID. The host key is recorded on first contact after
# the import (trust on first use), since the API does not know it.
terraform import 'microswarm_droplet_node.node[0]' 123456789
