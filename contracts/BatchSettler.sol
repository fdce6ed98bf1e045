// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @notice The EIP-3009 entry point the settler calls (FiatToken v2.2 and Stablecoin have it).
interface IEIP3009Token {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;
}

/// @title BatchSettler
/// @notice Settles many EIP-3009 transfer authorizations for one token in one
/// transaction. Each item is tried on its own: an item the token refuses
/// (used nonce, expired, bad signature, short balance) is reported with the
/// token's revert reason and does not undo the others.
/// @dev Anyone may call it, as anyone may submit an EIP-3009 authorization:
/// the signatures alone decide who pays whom. The settler holds no funds.
contract BatchSettler {
    struct Authorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        bytes signature;
    }

    /// @notice One per item, in order; `reason` is empty when `success` is true.
    event AuthorizationSettled(
        address indexed token,
        address indexed from,
        bytes32 indexed nonce,
        uint256 index,
        bool success,
        string reason
    );

    /// @notice Try every authorization; return which ones the token accepted.
    function settle(address token, Authorization[] calldata items) external returns (bool[] memory results) {
        // Without code, a call would "succeed" at the EVM level or revert
        // outside the try; refuse the whole batch instead.
        require(token.code.length > 0, "BatchSettler: token has no code");
        results = new bool[](items.length);
        for (uint256 i = 0; i < items.length; ++i) {
            Authorization calldata item = items[i];
            string memory reason;
            try IEIP3009Token(token).transferWithAuthorization(
                item.from, item.to, item.value, item.validAfter, item.validBefore, item.nonce, item.signature
            ) {
                results[i] = true;
            } catch Error(string memory message) {
                reason = message;
            } catch Panic(uint256 code) {
                reason = string.concat("panic ", _toHex(code));
            } catch (bytes memory data) {
                reason = data.length == 0 ? "reverted without a reason" : "reverted with a custom error";
            }
            emit AuthorizationSettled(token, item.from, item.nonce, i, results[i], reason);
        }
    }

    /// @dev `value` as 0x-prefixed hex without leading zeros, e.g. "0x11".
    function _toHex(uint256 value) private pure returns (string memory) {
        uint256 length = 1;
        for (uint256 rest = value >> 4; rest != 0; rest >>= 4) {
            ++length;
        }
        bytes memory digits = "0123456789abcdef";
        bytes memory out = new bytes(length + 2);
        out[0] = "0";
        out[1] = "x";
        for (uint256 i = length + 1; i > 1; --i) {
            out[i] = digits[value & 0xf];
            value >>= 4;
        }
        return string(out);
    }
}
