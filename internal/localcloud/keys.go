package localcloud

import (
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

type keyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// findKeyLocked resolves a key by numeric id or by MD5 fingerprint ("aa:bb:..."), the two
// ways DO accepts; c.mu must be held.
func (c *Cloud) findKeyLocked(ref string) *sshKey {
	id, idErr := strconv.Atoi(ref)
	for _, k := range c.st.Keys {
		if (idErr == nil && k.ID == id) || k.Fingerprint == ref {
			return k
		}
	}
	return nil
}

func (c *Cloud) listKeys(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	keys := make([]sshKey, len(c.st.Keys))
	for i, k := range c.st.Keys {
		keys[i] = *k
	}
	c.mu.Unlock()
	page, l, m := paginate(r, keys)
	writeJSON(w, http.StatusOK, map[string]any{"ssh_keys": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) createKey(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errUnprocessable("Name is required.")
	}
	publicKey := strings.TrimSpace(req.PublicKey)
	parsed, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(publicKey))
	if err != nil || strings.TrimSpace(string(rest)) != "" {
		return errUnprocessable("Key invalid, key should be of the format `type key [comment]`")
	}
	fingerprint := ssh.FingerprintLegacyMD5(parsed)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.st.Keys {
		if k.Fingerprint == fingerprint {
			return errUnprocessable("SSH Key is already in use on your account")
		}
	}
	key := &sshKey{ID: c.st.NextKeyID, Name: req.Name, Fingerprint: fingerprint, PublicKey: publicKey}
	c.st.NextKeyID++
	c.st.Keys = append(c.st.Keys, key)
	c.saveLocked()
	writeJSON(w, http.StatusCreated, map[string]any{"ssh_key": *key})
	return nil
}

func (c *Cloud) getKey(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.findKeyLocked(r.PathValue("key"))
	if key == nil {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"ssh_key": *key})
	return nil
}

func (c *Cloud) updateKey(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.findKeyLocked(r.PathValue("key"))
	if key == nil {
		return errNotFound()
	}
	if strings.TrimSpace(req.Name) != "" {
		key.Name = req.Name
	}
	c.saveLocked()
	writeJSON(w, http.StatusOK, map[string]any{"ssh_key": *key})
	return nil
}

func (c *Cloud) deleteKey(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.findKeyLocked(r.PathValue("key"))
	if key == nil {
		return errNotFound()
	}
	kept := c.st.Keys[:0]
	for _, k := range c.st.Keys {
		if k != key {
			kept = append(kept, k)
		}
	}
	c.st.Keys = kept
	c.saveLocked()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
